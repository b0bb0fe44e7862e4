// Instruction data: JSONL records and their errors, templates as golden text, masked token counts
// made by hand, truncation, the sampler, and packed rows against the same examples unpacked.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/bpe_tokenizer.h"
#include "core/errors.h"
#include "core/json.h"
#include "core/transformer.h"
#include "data/sft_dataset.h"
#include "data/token_cache.h"

using namespace ds;
namespace fs = std::filesystem;

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string p = (fs::temp_directory_path() / ("deltashard_data_" + name)).string();
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::string error_of(const std::string& line, Schema schema = Schema::Auto) {
  try {
    parse_record(line, "train.jsonl:17", schema);
  } catch (const FileError& e) {
    return e.what();
  }
  return "(no error)";
}

Record chat(std::vector<Turn> turns) {
  Record r;
  r.turns = std::move(turns);
  return r;
}

const Codec kBytes{nullptr, 257, "bytes"};

Example encode(Template t, const Record& r, const Codec& c = kBytes, bool inputs = false) {
  return encode_pieces(render(t, r), c, t, inputs);
}

// The counted ids as text (bytes), so a mask reads as what it covers.
std::string counted_text(const Example& e) {
  std::string s;
  for (size_t i = 0; i < e.ids.size(); ++i) {
    if (e.counted[i]) s += e.ids[i] < 256 ? std::string(1, static_cast<char>(e.ids[i])) : std::string("<eos>");
  }
  return s;
}

}  // namespace

TEST(Records, ThreeSchemasDetectedFromTheFirstRecord) {
  Schema s = Schema::Auto;
  Record r = parse_record(R"({"prompt": "2+2=", "completion": "4"})", "f:1", s);
  EXPECT_EQ(s, Schema::PromptCompletion);
  ASSERT_EQ(r.turns.size(), 2u);
  EXPECT_EQ(r.turns[1].content, "4");
  s = Schema::Auto;
  r = parse_record(R"({"instruction": "add", "input": "2 2", "output": "4"})", "f:1", s);
  EXPECT_EQ(s, Schema::Alpaca);
  EXPECT_EQ(r.input, "2 2");
  s = Schema::Auto;
  r = parse_record(R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                      {"role": "assistant", "content": "A"}]})",
                   "f:1", s);
  EXPECT_EQ(s, Schema::Chat);
  ASSERT_EQ(r.turns.size(), 3u);
  EXPECT_EQ(r.turns[0].role, Role::System);
}

TEST(Records, EachBadRecordNamesFileLineAndField) {
  EXPECT_EQ(error_of(R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "bot", "content": "c"}]})"),
            "train.jsonl:17: messages[2].role: expected system, user or assistant, got 'bot'");
  EXPECT_EQ(error_of(R"({"prompt": "a"})"), "train.jsonl:17: completion: is missing");
  EXPECT_EQ(error_of(R"({"prompt": "a", "completion": 3})"), "train.jsonl:17: completion: expected a string, got an integer");
  EXPECT_EQ(error_of(R"({"instruction": "a", "input": [], "output": "b"})"),
            "train.jsonl:17: input: expected a string, got a list");
  EXPECT_EQ(error_of(R"({"messages": []})"), "train.jsonl:17: messages: is empty");
  EXPECT_EQ(error_of(R"({"messages": "hi"})"), "train.jsonl:17: messages: expected a list, got a string");
  EXPECT_EQ(error_of(R"({"messages": [{"role": "user", "content": "a"}]})"),
            "train.jsonl:17: messages: no assistant message (nothing to learn)");
  EXPECT_EQ(error_of(R"({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]})"),
            "train.jsonl:17: messages[1].role: system only as the first message");
  EXPECT_EQ(error_of(R"({"messages": [{"role": "user"}]})"), "train.jsonl:17: messages[0].content: is missing");
  EXPECT_EQ(error_of(R"({"messages": [3]})"), "train.jsonl:17: messages[0]: expected an object, got an integer");
  EXPECT_EQ(error_of("{\"prompt\": \"a\xff\", \"completion\": \"b\"}"), "train.jsonl:17: invalid UTF-8 at byte 14 of the line");
  EXPECT_EQ(error_of(R"({"prompt": "a", )"), "train.jsonl:17: not valid JSON at byte 17: syntax error while parsing object key - unexpected end of input; expected string literal");
  EXPECT_EQ(error_of("[1]"), "train.jsonl:17: expected a JSON object, got a list");
  EXPECT_EQ(error_of(R"({"text": "a"})"),
            "train.jsonl:17: data.schema auto: the first record has none of messages (chat), instruction (alpaca) or "
            "prompt/completion");
  // A schema given (or detected earlier) is kept: an Alpaca record in a chat file lacks messages.
  EXPECT_EQ(error_of(R"({"instruction": "a", "output": "b"})", Schema::Chat), "train.jsonl:17: messages: is missing");
}

TEST(Records, Utf8Validation) {
  EXPECT_EQ(invalid_utf8_at("plain ascii"), -1);
  EXPECT_EQ(invalid_utf8_at("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), -1);
  EXPECT_EQ(invalid_utf8_at("a\xc0\xaf"), 1);      // overlong
  EXPECT_EQ(invalid_utf8_at("ab\xed\xa0\x80"), 2);  // surrogate
  EXPECT_EQ(invalid_utf8_at("abc\xe2\x82"), 3);     // cut short
  EXPECT_EQ(invalid_utf8_at("\xf4\x90\x80\x80"), 0);  // above U+10FFFF
}

TEST(Records, EmptyResponsesAreSkippedAndCounted) {
  const std::string f = write_temp("empty.jsonl",
                                   "{\"prompt\": \"a\", \"completion\": \"b\"}\n\n"
                                   "{\"prompt\": \"a\", \"completion\": \"\"}\n"
                                   "{\"prompt\": \"c\", \"completion\": \"d\"}\n");
  Schema s = Schema::Auto;
  RecordCounts c;
  const auto records = read_jsonl(f, s, c);
  EXPECT_EQ(records.size(), 2u);
  EXPECT_EQ(c.lines, 3);
  EXPECT_EQ(c.skipped_empty, 1);
  EXPECT_EQ(records[1].where, f + ":4");
  const std::string bad = write_temp("bad.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\"}\n");
  s = Schema::Auto;
  try {
    read_jsonl(bad, s, c);
    FAIL();
  } catch (const FileError& e) {
    EXPECT_EQ(std::string(e.what()), bad + ":2: completion: is missing");
  }
}

TEST(Templates, GoldenText) {
  const Record r = chat({{Role::System, "Be brief."},
                         {Role::User, "Hi"},
                         {Role::Assistant, "Hello."},
                         {Role::User, "2+2?"},
                         {Role::Assistant, "4"}});
  EXPECT_EQ(pieces_text(render(Template::Plain, r)), "<bos>Be brief.\nHi\nHello.<eos>2+2?\n4<eos>");
  EXPECT_EQ(pieces_text(render(Template::Chatml, r)),
            "<bos><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n4<|im_end|>\n");
  EXPECT_EQ(pieces_text(render(Template::Llama3, r)),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>");
  EXPECT_EQ(pieces_text(render(Template::Alpaca, r)),
            "<bos>Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello.<eos>\n\n### Instruction:\n2+2?\n\n"
            "### Response:\n4<eos>");
  Record a = chat({{Role::User, "Add."}, {Role::Assistant, "4"}});
  a.input = "2 2";
  EXPECT_EQ(pieces_text(render(Template::Alpaca, a)),
            "<bos>Below is an instruction that describes a task, paired with an input that provides further context. "
            "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 2\n\n"
            "### Response:\n4<eos>");
  EXPECT_EQ(pieces_text(render(Template::Plain, a)), "<bos>Add.\n\n2 2\n4<eos>");
  a.input.clear();
  EXPECT_EQ(pieces_text(render(Template::Alpaca, a)),
            "<bos>Below is an instruction that describes a task. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\nAdd.\n\n### Response:\n4<eos>");
  EXPECT_EQ(pieces_text(render_prompt(Template::Plain, "2+2=")), "<bos>2+2=\n");
  EXPECT_EQ(pieces_text(render_prompt(Template::Chatml, "Hi")), "<bos><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(pieces_text(render_prompt(Template::Llama3, "Hi")),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(Templates, MaskedCountsByHandWithBytes) {
  // prompt/completion through plain: "ab\ncd" + end-of-text 256; targets c, d, <eos>.
  Example e = encode(Template::Plain, chat({{Role::User, "ab"}, {Role::Assistant, "cd"}}));
  EXPECT_EQ(e.ids, (std::vector<int64_t>{'a', 'b', '\n', 'c', 'd', 256}));
  EXPECT_EQ(e.num_counted(), 3);
  EXPECT_EQ(counted_text(e), "cd<eos>");
  // Alpaca through alpaca: the 105-byte preamble, two blank lines, headers; targets "ok" + <eos>.
  Record a = chat({{Role::User, "hi"}, {Role::Assistant, "ok"}});
  e = encode(Template::Alpaca, a);
  EXPECT_EQ(e.num_counted(), 3);
  EXPECT_EQ(static_cast<int64_t>(e.ids.size()), 105 + 2 + 17 + 4 + 14 + 2 + 1);
  // Chat, two turns: every assistant turn counts, nothing else.
  const Record c = chat({{Role::System, "S"},
                         {Role::User, "U1"},
                         {Role::Assistant, "A1"},
                         {Role::User, "U2"},
                         {Role::Assistant, "A2x"}});
  e = encode(Template::Plain, c);
  EXPECT_EQ(e.num_counted(), 3 + 4);
  EXPECT_EQ(counted_text(e), "A1<eos>A2x<eos>");
  EXPECT_EQ(e.ids.size(), 2u + 3 + 3 + 3 + 4);
  // train_on_inputs: every id but the first.
  e = encode(Template::Plain, c, kBytes, true);
  EXPECT_EQ(e.num_counted(), static_cast<int64_t>(e.ids.size()) - 1);
}

TEST(Templates, SpecialTokensMustExist) {
  auto message = [](Template t, const Codec& c) {
    try {
      c.check(t);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(message(Template::Chatml, kBytes),
            "data.template: chatml: token <|im_start|> is not in the tokenizer (bytes: only end-of-text, id 256)");
  EXPECT_EQ(message(Template::Llama3, kBytes),
            "data.template: llama3: token <|begin_of_text|> is not in the tokenizer (bytes: only end-of-text, id 256)");
  EXPECT_EQ(message(Template::Plain, Codec{nullptr, 256, "bytes"}),
            "data.template: plain: bytes have no end-of-text token with model.vocab_size 256 (257 or more gives it "
            "the id 256)");
  EXPECT_EQ(message(Template::Alpaca, kBytes), "(no error)");
  const BpeTokenizer gpt2 = read_bpe_tokenizer(DS_FIXTURES "/gpt2_tokenizer_head.json");
  const Codec g{&gpt2, 400, "gpt2_tokenizer_head.json"};
  EXPECT_EQ(message(Template::Chatml, g),
            "data.template: chatml: token <|im_start|> is not in the tokenizer (gpt2_tokenizer_head.json)");
  EXPECT_EQ(message(Template::Plain, g), "(no error)");
  EXPECT_EQ(g.eos(Template::Plain), 304);
}

TEST(Templates, ChatmlCountsWithATokenizerThatHasItsTokens) {
  Json j = read_json_file(DS_FIXTURES "/gpt2_tokenizer_head.json");
  j["added_tokens"].push_back({{"id", 305}, {"content", "<|im_start|>"}, {"special", true}});
  j["added_tokens"].push_back({{"id", 306}, {"content", "<|im_end|>"}, {"special", true}});
  const std::string path = write_temp("chatml_tokenizer.json", j.dump());
  const BpeTokenizer tok = read_bpe_tokenizer(path);
  const Codec c{&tok, 307, path};
  c.check(Template::Chatml);
  const Record r = chat({{Role::User, "x"}, {Role::Assistant, "yes"}, {Role::User, "y"}, {Role::Assistant, "no"}});
  const Example e = encode(Template::Chatml, r, c);
  // Each response's own tokens and its <|im_end|>.
  const int64_t want = static_cast<int64_t>(c.encode("yes").size() + 1 + c.encode("no").size() + 1);
  EXPECT_EQ(e.num_counted(), want);
  int64_t im_end_counted = 0, im_start = 0;
  for (size_t i = 0; i < e.ids.size(); ++i) {
    im_end_counted += e.ids[i] == 306 && e.counted[i];
    im_start += e.ids[i] == 305;
  }
  EXPECT_EQ(im_end_counted, 2);  // the two assistant turns' ends, not the user turns'
  EXPECT_EQ(im_start, 4);
}

TEST(Truncation, DropOrCutThePromptFromTheLeft) {
  Example e = encode(Template::Plain, chat({{Role::User, "abcdef"}, {Role::Assistant, "xy"}}));  // 10 ids
  bool truncated = false;
  Example d = e;
  EXPECT_FALSE(fit_example(d, 8, Truncate::Drop, truncated));
  Example l = e;
  ASSERT_TRUE(fit_example(l, 8, Truncate::Left, truncated));
  EXPECT_TRUE(truncated);
  EXPECT_EQ(l.ids, (std::vector<int64_t>{'c', 'd', 'e', 'f', '\n', 'x', 'y', 256}));
  EXPECT_EQ(counted_text(l), "xy<eos>");
  // The cut may not reach the token before the response.
  Example too = e;
  EXPECT_FALSE(fit_example(too, 3, Truncate::Left, truncated));
  Example fits = e;
  EXPECT_TRUE(fit_example(fits, 10, Truncate::Drop, truncated));
  EXPECT_FALSE(truncated);
}

TEST(Batches, TargetsPositionsAndSegments) {
  const Example a = encode(Template::Plain, chat({{Role::User, "ab"}, {Role::Assistant, "c"}}));  // a b \n c eos
  const Example b = encode(Template::Plain, chat({{Role::User, "d"}, {Role::Assistant, "ef"}}));  // d \n e f eos
  const std::vector<Row> packed = make_rows({a, b}, 12, true);
  ASSERT_EQ(packed.size(), 1u);
  const Batch p = make_batch({&packed[0]}, true);
  EXPECT_EQ(p.counted, 2 + 3);
  EXPECT_EQ(p.x.size(1), 9);  // 10 ids, shifted
  EXPECT_TRUE(torch::equal(p.positions[0], torch::tensor({0, 1, 2, 3, 4, 0, 1, 2, 3}, torch::kLong)));
  EXPECT_TRUE(torch::equal(p.segments[0], torch::tensor({0, 0, 0, 0, 0, 1, 1, 1, 1}, torch::kLong)));
  // The last id of `a` never predicts the first of `b`.
  EXPECT_EQ(p.y[0][4].item<int64_t>(), -100);
  EXPECT_EQ(p.y[0][2].item<int64_t>(), 'c');
  const std::vector<Row> single = make_rows({a, b}, 12, false);
  ASSERT_EQ(single.size(), 2u);
  const Batch u = make_batch({&single[0], &single[1]}, false);
  EXPECT_FALSE(u.segments.defined());
  EXPECT_EQ(u.counted, 5);
  EXPECT_EQ((u.y != -100).sum().item<int64_t>(), 5);
  // Rows that are full start a new one.
  EXPECT_EQ(make_rows({a, b, a}, 10, true).size(), 2u);
}

TEST(Sampler, DataParallelInvariantAndEachRowOncePerEpoch) {
  std::vector<Example> ex;
  for (int i = 0; i < 10; ++i) {
    ex.push_back(encode(Template::Plain, chat({{Role::User, std::string(1 + i % 3, 'q')}, {Role::Assistant, std::to_string(i)}})));
  }
  const SftDataset d = SftDataset::from_examples(ex, {}, 16, false);
  ASSERT_EQ(d.num_train_rows(), 10);
  // One call of 8 sequences equals eight calls of one (DP 8): each row, its padding aside.
  const Batch all = d.train_batch(7, 8, 8);
  for (int64_t i = 0; i < 8; ++i) {
    const Batch one = d.train_batch(7, 8 + i, 1);
    const int64_t T = one.y.size(1);
    EXPECT_TRUE(torch::equal(one.y[0], all.y[i].narrow(0, 0, T))) << i;
    EXPECT_EQ((all.y[i].narrow(0, T, all.y.size(1) - T) != -100).sum().item<int64_t>(), 0);
  }
  // Epoch 0 and epoch 1 each hold every row once, in different orders.
  std::vector<std::string> e0, e1;
  for (int64_t g = 0; g < 20; ++g) {
    const Batch b = d.train_batch(7, g, 1);
    std::string s;
    for (int64_t t = 0; t < b.x.size(1); ++t) s += static_cast<char>(b.x[0][t].item<int64_t>());
    (g < 10 ? e0 : e1).push_back(s);
  }
  EXPECT_NE(e0, e1);
  std::sort(e0.begin(), e0.end());
  std::sort(e1.begin(), e1.end());
  EXPECT_EQ(e0, e1);
  EXPECT_EQ(std::unique(e0.begin(), e0.end()) - e0.begin(), 10);
}

namespace {

// GPT-2 style (learned positions) or LLaMA style (rotary, RMSNorm, SwiGLU, grouped-query).
ModelConfig tiny(bool rope) {
  ModelConfig c;
  c.vocab_size = 257;  // bytes and end-of-text
  c.n_layer = 2;
  c.n_head = 4;
  c.d_model = 16;
  c.d_ff = 32;
  c.max_seq_len = 64;
  if (!rope) return c;
  c.layout = Layout::Llama;
  c.norm = NormKind::RmsNorm;
  c.activation = Activation::SwiGlu;
  c.positions = Positions::Rope;
  c.bias = false;
  c.n_kv_head = 2;
  c.tie_embeddings = false;
  return c;
}

// Loss (sum over counted targets / their count) and every parameter's gradient.
std::pair<double, std::vector<torch::Tensor>> loss_and_grads(Transformer& m, const Batch& b) {
  m->zero_grad();
  const std::optional<Packing> pk =
      b.segments.defined() ? std::optional<Packing>(make_packing(b.positions, b.segments)) : std::nullopt;
  const torch::Tensor loss = lm_loss_sum(m->forward(b.x, nullptr, pk ? &*pk : nullptr), b.y) / static_cast<double>(b.counted);
  loss.backward();
  std::vector<torch::Tensor> g;
  for (auto& p : m->parameters()) g.push_back(p.grad().clone());
  return {loss.item<double>(), g};
}

}  // namespace

TEST(Packing, LossAndGradientsEqualUnpacked) {
  for (bool rope : {false, true}) {
    torch::manual_seed(3);
    Transformer m(tiny(rope), dense_factory());
    {
      torch::NoGradGuard g;
      for (auto& p : m->parameters()) p.normal_(0.0, 0.2);
    }
    std::vector<Example> ex;
    const char* prompts[] = {"abc", "de", "fghij", "k", "lmnopq", "rs"};
    const char* answers[] = {"1", "23", "4", "567", "8", "90"};
    for (int i = 0; i < 6; ++i) ex.push_back(encode(Template::Plain, chat({{Role::User, prompts[i]}, {Role::Assistant, answers[i]}})));
    const std::vector<Row> packed = make_rows(ex, 24, true), single = make_rows(ex, 24, false);
    ASSERT_LT(packed.size(), single.size());
    std::vector<const Row*> p, s;
    for (const auto& r : packed) p.push_back(&r);
    for (const auto& r : single) s.push_back(&r);
    const Batch bp = make_batch(p, true), bs = make_batch(s, false);
    ASSERT_EQ(bp.counted, bs.counted);
    const auto [lp, gp] = loss_and_grads(m, bp);
    const auto [ls, gs] = loss_and_grads(m, bs);
    EXPECT_NEAR(lp, ls, 1e-5) << (rope ? "rope" : "learned positions");
    ASSERT_EQ(gp.size(), gs.size());
    for (size_t i = 0; i < gp.size(); ++i) {
      EXPECT_LE((gp[i] - gs[i]).abs().max().item<double>(), 1e-5) << (rope ? "rope" : "learned") << " param " << i;
    }
    // Without the block-diagonal mask the packed loss differs: the test can fail.
    Batch leak = bp;
    leak.segments = torch::zeros_like(bp.segments);
    EXPECT_GT(std::abs(loss_and_grads(m, leak).first - ls), 1e-4);
  }
}

TEST(TokenCache, RoundTripsBothDatasetsAndRefusesDamage) {
  const std::string f1 = write_temp("cache1.txt", "the first file"), f2 = write_temp("cache2.txt", "the second");
  const uint64_t key = token_cache_key({f1, f2}, "bytes", "text val_fraction=0.1");
  EXPECT_NE(key, token_cache_key({f2, f1}, "bytes", "text val_fraction=0.1"));  // order matters
  EXPECT_NE(key, token_cache_key({f1, f2}, "bytes", "text val_fraction=0.2"));
  EXPECT_NE(key, token_cache_key({f1, f2}, f1, "text val_fraction=0.1"));      // the tokenizer's bytes

  const std::string dir = (fs::temp_directory_path() / "deltashard_data_cache").string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string file = token_cache_file(dir, key);
  std::string why;
  EXPECT_FALSE(read_token_cache(file, key, why));
  EXPECT_EQ(why, "absent");

  const TokenDataset text = TokenDataset::from_tokens(torch::arange(7), torch::tensor({70000, 3}));
  write_token_cache(file, key, to_arrays(text));
  const auto a = read_token_cache(file, key, why);
  ASSERT_TRUE(a);
  const TokenDataset back = token_dataset_from(*a, {f1});
  EXPECT_TRUE(torch::equal(back.train_ids(), text.train_ids()));
  EXPECT_TRUE(torch::equal(back.val_ids(), text.val_ids()));
  EXPECT_FALSE(read_token_cache(file, key + 1, why));
  EXPECT_EQ(why, "of another key");

  SftEncoded e;
  e.train = {Example{{1, 2, 3}, {0, 1, 1}}, Example{{4}, {1}}};
  e.val = {Example{{5, 6}, {0, 1}}};
  e.counts.records = 4;
  e.counts.dropped = 1;
  write_token_cache(file, key, to_arrays(e));
  const SftEncoded s = sft_encoded_from(*read_token_cache(file, key, why), {f1});
  ASSERT_EQ(s.train.size(), 2u);
  ASSERT_EQ(s.val.size(), 1u);
  EXPECT_EQ(s.train[0].ids, e.train[0].ids);
  EXPECT_EQ(s.train[0].counted, e.train[0].counted);
  EXPECT_EQ(s.val[0].ids, e.val[0].ids);
  EXPECT_EQ(s.counts.records, 4);
  EXPECT_EQ(s.counts.dropped, 1);

  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes[30] ^= 1;
  std::ofstream(file, std::ios::binary) << bytes;
  EXPECT_FALSE(read_token_cache(file, key, why));
  EXPECT_EQ(why, "checksum mismatch (damaged)");
  std::ofstream(file, std::ios::binary) << bytes.substr(0, 12);
  EXPECT_FALSE(read_token_cache(file, key, why));
  EXPECT_EQ(why, "not a token cache");
}
