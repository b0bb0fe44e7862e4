// deltashard data: what a run's data section makes of its files, without a model: N examples
// rendered with the spans that the loss ignores marked [[like this]], and exact counts (examples,
// tokens, counted tokens, dropped, truncated, packing efficiency).
#include <cstdio>

#include "core/tokenizer.h"
#include "dist/mpi_env.h"
#include "trainer/commands/cli.h"
#include "trainer/model_builder.h"
#include "trainer/trainer.h"

namespace ds {

namespace {
// The example's ids in runs of the same mask, ignored runs inside [[ ]]. Byte-level end-of-text
// (id 256) reads <eos>.
std::string marked_text(const Example& e, const Codec& codec) {
  std::string out;
  size_t i = 0;
  while (i < e.ids.size()) {
    size_t j = i;
    while (j < e.ids.size() && e.counted[j] == e.counted[i]) ++j;
    std::string text;
    std::vector<int64_t> run;
    for (size_t k = i; k < j; ++k) {
      if (!codec.bpe && e.ids[k] >= kByteVocab) {
        text += codec.decode(run) + "<eos>";
        run.clear();
      } else {
        run.push_back(e.ids[k]);
      }
    }
    text += codec.decode(run);
    out += e.counted[i] ? text : "[[" + text + "]]";
    i = j;
  }
  return out;
}
}  // namespace

int cmd_data(int argc, char** argv) {
  CommonArgs args;
  int64_t show = 3;
  po::options_description desc("deltashard data");
  add_common(desc, args, true);
  desc.add_options()("show", po::value<int64_t>(&show), "render this many training examples (default 3)");
  const std::string usage = "deltashard data CONFIG [--set k=v] [--show N] [--json]";
  if (!parse_args(argc, argv, desc, args, true, usage)) return 0;
  if (show < 0) throw UsageError("--show must be >= 0, got " + std::to_string(show));
  const RunConfig cfg = load_run_config(args.config, args.overrides);
  if (cfg.data.format != DataFormat::Jsonl) {
    throw UsageError("deltashard data: " + args.config + ": data.format is text; it shows JSONL instruction data");
  }
  const std::optional<BpeTokenizer> tok = load_tokenizer(cfg);
  const Codec codec = codec_for(cfg, tok);
  const SftDataset d = load_sft_dataset(cfg, tok);
  const SftStats& s = d.stats();
  Json shown = Json::array();
  const auto& ex = d.train_examples();
  for (size_t i = 0; i < ex.size() && static_cast<int64_t>(i) < show; ++i) {
    Json e = Json::object();
    e["tokens"] = static_cast<int64_t>(ex[i].ids.size());
    e["counted"] = ex[i].num_counted();
    e["text"] = marked_text(ex[i], codec);
    shown.push_back(e);
  }
  Json j = Json::object();
  j["files"] = static_cast<int64_t>(d.files().size());
  j["schema"] = enum_name(cfg.data.schema);
  j["template"] = enum_name(cfg.data.chat_template);
  j["records"] = s.records;
  j["skipped_empty"] = s.skipped_empty;
  j["examples"] = s.examples;
  j["val_examples"] = s.val_examples;
  j["tokens"] = s.tokens;
  j["counted_tokens"] = s.counted;
  j["dropped"] = s.dropped;
  j["truncated"] = s.truncated;
  j["sequences"] = s.train_rows;
  j["packing"] = cfg.data.packing;
  j["packing_efficiency"] = s.packing_efficiency;
  j["shown"] = shown;
  if (args.json) {
    print0("%s\n", json_line(j).c_str());
    return 0;
  }
  for (size_t i = 0; i < shown.size(); ++i) {
    print0("--- example %zu: %lld tokens, %lld counted ([[...]] is not in the loss)\n", i,
           static_cast<long long>(shown[i]["tokens"].get<int64_t>()), static_cast<long long>(shown[i]["counted"].get<int64_t>()));
    write0(shown[i]["text"].get<std::string>() + "\n");
  }
  print0("records %lld (%lld skipped: empty response) | examples %lld (%lld held out) | tokens %lld, counted %lld | "
         "dropped %lld, truncated %lld (train.seq_len %lld, data.truncate %s) | %lld training sequences, packing %s, "
         "efficiency %.4f\n",
         static_cast<long long>(s.records), static_cast<long long>(s.skipped_empty), static_cast<long long>(s.examples),
         static_cast<long long>(s.val_examples), static_cast<long long>(s.tokens), static_cast<long long>(s.counted),
         static_cast<long long>(s.dropped), static_cast<long long>(s.truncated), static_cast<long long>(cfg.train.seq_len),
         enum_name(cfg.data.truncate), static_cast<long long>(s.train_rows), cfg.data.packing ? "on" : "off",
         s.packing_efficiency);
  return 0;
}

}  // namespace ds
