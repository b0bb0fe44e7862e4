// deltashard generate: continues a prompt with a model directory (any supported layout),
// optionally with a checkpoint's trainable parameters (LoRA factors, adapters) applied, using
// the KV cache of core/generate.h. Prompts are text, encoded by the model directory's
// tokenizer.json (byte-level BPE) or, for 256-token vocabularies without one, as bytes; or token ids.
#include <cstdio>
#include <optional>

#include "core/bpe_tokenizer.h"
#include "core/generate.h"
#include "core/model_io.h"
#include "core/tokenizer.h"
#include "data/templates.h"
#include "dist/mpi_env.h"
#include "trainer/checkpoint.h"
#include "trainer/commands/cli.h"
#include "core/dir_layout.h"
#include "core/files.h"
#include "trainer/model_builder.h"

namespace ds {

int cmd_generate(int argc, char** argv) {
  CommonArgs args;
  std::string model_dir, checkpoint, prompt, prompt_ids, tokenizer_path, template_name, job;
  SamplingOptions opt;
  bool greedy = false;
  double temperature = 0;
  int64_t top_k = 0;
  std::string dtype, device;
  po::options_description desc("deltashard generate");
  add_common(desc, args, false, false);
  desc.add_options()("model", po::value<std::string>(&model_dir), "model directory (DeltaShard, GPT-2 or LLaMA layout)")(
      "checkpoint", po::value<std::string>(&checkpoint), "apply this checkpoint's trainable parameters")(
      "job", po::value<std::string>(&job), "with a campaign's --checkpoint DIR: the job NAME's (DIR/jobs/NAME)")(
      "prompt", po::value<std::string>(&prompt), "prompt text (the tokenizer's, or bytes for 256-token vocabularies)")(
      "tokenizer", po::value<std::string>(&tokenizer_path), "tokenizer.json (default: the model directory's, if any)")(
      "prompt-ids", po::value<std::string>(&prompt_ids), "prompt token ids, comma separated")(
      "template", po::value<std::string>(&template_name),
      "plain | chatml | llama3 | alpaca: the prompt as a user turn, the answer until the end of the response")(
      "max-new-tokens", po::value<int64_t>(&opt.max_new_tokens), "tokens to generate (default 32)")(
      "greedy", po::bool_switch(&greedy), "argmax decoding (the default unless --temperature is given)")(
      "temperature", po::value<double>(&temperature), "sample with this temperature")(
      "top-k", po::value<int64_t>(&top_k), "sample among the k most likely tokens")(
      "seed", po::value<uint64_t>(&opt.seed), "sampling seed (default 0)")(
      "dtype", po::value<std::string>(&dtype), "the base's type in memory: fp32, bf16, fp16 (default: the checkpoint's, else fp32)")(
      "device", po::value<std::string>(&device), "cpu or cuda (default: the checkpoint's, else cpu)");
  const std::string usage =
      "deltashard generate --model DIR [--checkpoint DIR] (--prompt TEXT [--template NAME] | --prompt-ids 1,2,3) "
      "--max-new-tokens N "
      "[--greedy | --temperature T --top-k K] [--json]";
  if (!parse_args(argc, argv, desc, args, false, usage)) return 0;
  if (model_dir.empty()) throw UsageError("--model is required (usage: " + usage + ")");
  if (!job.empty()) {
    if (checkpoint.empty()) throw UsageError("--job names a job of a campaign's --checkpoint DIR");
    const std::string dir = checkpoint + "/jobs/" + job;
    if (!is_directory(dir)) throw UsageError("--job: " + dir + ": no such job in the campaign checkpoint");
    checkpoint = dir;
  }
  if (prompt.empty() == prompt_ids.empty()) throw UsageError("give exactly one of --prompt or --prompt-ids");
  std::optional<Template> chat_template;
  if (!template_name.empty()) {
    chat_template = enum_from<Template>(template_name);
    if (!chat_template) {
      throw UsageError("--template: '" + template_name + "' is not one of " + join_choices(enum_choices<Template>()));
    }
    if (prompt.empty()) throw UsageError("--template renders --prompt; it does not apply to --prompt-ids");
  }
  if (greedy && (temperature > 0 || top_k > 0)) throw UsageError("--greedy excludes --temperature and --top-k");
  if (top_k < 0) throw UsageError("--top-k must be >= 0");
  if (opt.max_new_tokens < 1) throw UsageError("--max-new-tokens must be >= 1, got " + std::to_string(opt.max_new_tokens));
  opt.greedy = !(temperature > 0 || top_k > 0);
  opt.temperature = temperature > 0 ? temperature : 1.0;
  opt.top_k = top_k;

  // One process, unsharded, no data: the model builder alone.
  RunConfig cfg;
  cfg.file = "generate";
  cfg.peft.method = PeftMethod::None;
  if (!checkpoint.empty()) cfg = parse_run_config(resolve_checkpoint(checkpoint) + "/config.yaml", {});
  cfg.model.path = model_dir;
  if (!dtype.empty()) {
    const auto d = enum_from<DType>(dtype);
    if (!d) throw UsageError("--dtype: '" + dtype + "' is not one of " + join_choices(enum_choices<DType>()));
    cfg.model.dtype = *d;
  }
  if (!device.empty()) {
    const auto d = enum_from<Device>(device);
    if (!d) throw UsageError("--device: '" + device + "' is not one of " + join_choices(enum_choices<Device>()));
    cfg.train.device = *d;
  }
  cfg.parallel = ParallelConfig{};
  cfg.train.threads = 0;
  cfg.train.seq_len = 1;  // no training: generation checks its own bound against max_seq_len
  cfg.data.tokenizer = "bytes";  // generation finds its tokenizer below (--tokenizer or the model's)
  resolve_run_config(cfg);
  ProcessGrid grid = make_grid(GridOptions{1, Backend::Mpi, 0, MPI_COMM_SELF});
  set_threads(cfg);
  BuiltModel b = build_model(cfg, *grid.tp_group);
  if (!checkpoint.empty()) load_trainable(b.model, cfg, checkpoint);
  model_dir = cfg.model.path;
  const ModelConfig& mc = b.model->cfg;
  if (tokenizer_path.empty()) tokenizer_path = tokenizer_in(model_dir);
  std::optional<BpeTokenizer> tok;
  if (!tokenizer_path.empty()) {
    tok = read_bpe_tokenizer(tokenizer_path);
    if (tok->vocab_size() > mc.vocab_size) {
      throw UsageError(tokenizer_path + ": " + std::to_string(tok->vocab_size()) + " tokens, but the model's vocab_size is " +
                       std::to_string(mc.vocab_size));
    }
  }
  // Byte-level: 256 tokens, or more with end-of-text at 256 (instruction fine-tuning's bases).
  const bool bytes = !tok && (mc.vocab_size == kByteVocab || (chat_template && mc.vocab_size > kByteVocab));
  const Codec codec{tok ? &*tok : nullptr, mc.vocab_size, tok ? tokenizer_path : "bytes"};
  auto to_text = [&](const std::vector<int64_t>& t) { return tok ? bpe_decode(*tok, t) : codec.decode(t); };
  std::vector<int64_t> ids;
  if (chat_template) {
    if (!tok && !bytes) throw UsageError("--template needs a tokenizer.json or a byte-level model (vocab_size 256 or more)");
    try {
      ids = encode_pieces(render_prompt(*chat_template, prompt), codec, *chat_template, false).ids;
      opt.stop_id = codec.end_of_response(*chat_template);
    } catch (const ConfigError& e) {
      throw UsageError(std::string("--template: ") + e.what());
    }
  } else if (!prompt.empty()) {
    if (tok) {
      ids = add_special_tokens(*tok, bpe_encode(*tok, prompt));  // LLaMA 3: <|begin_of_text|> first
    } else if (bytes) {
      ids = encode_bytes(prompt);
    } else {
      throw UsageError("--prompt needs a tokenizer: " + model_dir + " has no tokenizer.json and " +
                       std::to_string(mc.vocab_size) + " tokens (not bytes); give --tokenizer or --prompt-ids");
    }
    if (ids.empty()) throw UsageError("--prompt: empty after tokenization");
  } else {
    ids = parse_int_list(prompt_ids, "--prompt-ids", 0);
  }
  std::vector<int64_t> out;
  try {
    out = generate(b.model, ids, opt);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  Json j = Json::object();
  Json toks = Json::array();
  for (int64_t t : out) toks.push_back(t);
  j["ids"] = toks;
  j["prompt_tokens"] = static_cast<int64_t>(ids.size());
  const bool ended = opt.stop_id >= 0 && !out.empty() && out.back() == opt.stop_id;
  if (chat_template) j["ended"] = ended;  // the response ended with the template's end token
  if (tok || bytes) j["text"] = to_text(ended ? std::vector<int64_t>(out.begin(), out.end() - 1) : out);
  if (args.json) {
    print0("%s\n", json_line(j).c_str());
  } else if (tok || bytes) {
    write0(chat_template ? j["text"].get<std::string>() + (ended ? "" : " [no end of response]") + "\n"
                         : (prompt.empty() ? to_text(ids) : prompt) + to_text(out) + "\n");
  } else {
    std::string s2;
    for (int64_t t : out) s2 += (s2.empty() ? "" : ",") + std::to_string(t);
    print0("%s\n", s2.c_str());
  }
  return 0;
}

}  // namespace ds
