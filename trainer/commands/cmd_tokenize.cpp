// deltashard tokenize: a tokenizer.json applied to text (ids out) or to ids (text out), to check
// prompts and to compare the BPE against a reference (launch/check_tokenizer.sh).
#include "core/bpe_tokenizer.h"
#include "core/safetensors.h"
#include "dist/mpi_env.h"
#include "trainer/commands/cli.h"

namespace ds {

int cmd_tokenize(int argc, char** argv) {
  CommonArgs args;
  std::string tokenizer, text, file, decode, pieces;
  po::options_description desc("deltashard tokenize");
  add_common(desc, args, false, false);
  desc.add_options()("tokenizer", po::value<std::string>(&tokenizer), "tokenizer.json (byte-level BPE: GPT-2, LLaMA 3)")(
      "text", po::value<std::string>(&text), "text to encode")(
      "file", po::value<std::string>(&file), "encode this file's bytes")(
      "decode", po::value<std::string>(&decode), "token ids to decode, comma separated")(
      "pieces", po::value<std::string>(&pieces), "gpt2 | llama3: print that pre-tokenizer's pieces as JSON (no tokenizer needed)");
  const std::string usage =
      "deltashard tokenize (--tokenizer FILE | --pieces gpt2|llama3) (--text TEXT | --file F | --decode 1,2,3) [--json]";
  if (!parse_args(argc, argv, desc, args, false, usage)) return 0;
  if (tokenizer.empty() == pieces.empty()) throw UsageError("give one of --tokenizer or --pieces (usage: " + usage + ")");
  if (!text.empty() + !file.empty() + !decode.empty() != 1) throw UsageError("give one of --text, --file or --decode");
  if (!file.empty()) text = read_file(file);
  if (!pieces.empty()) {
    if (pieces != "gpt2" && pieces != "llama3") throw UsageError("--pieces: '" + pieces + "' is not gpt2 or llama3");
    if (!decode.empty()) throw UsageError("--pieces splits text; --decode needs --tokenizer");
    Json a = Json::array();
    for (const std::string& p : pretokenize(pieces == "gpt2" ? PreTokenizer::Gpt2 : PreTokenizer::Llama3, text)) a.push_back(p);
    Json j = Json::object();
    j["pieces"] = a;
    print0("%s\n", json_line(j).c_str());
    return 0;
  }
  const BpeTokenizer tok = read_bpe_tokenizer(tokenizer);
  if (!decode.empty()) {
    const std::string out = bpe_decode(tok, parse_int_list(decode, "--decode", 0));
    if (args.json) {
      Json j = Json::object();
      j["text"] = out;
      print0("%s\n", json_line(j).c_str());
    } else {
      write0(out + "\n");
    }
    return 0;
  }
  const std::vector<int64_t> ids = bpe_encode(tok, text);
  if (args.json) {
    Json j = Json::object();
    Json a = Json::array();
    for (int64_t t : ids) a.push_back(t);
    j["ids"] = a;
    j["tokens"] = static_cast<int64_t>(ids.size());
    j["bytes"] = static_cast<int64_t>(text.size());
    print0("%s\n", json_line(j).c_str());
  } else {
    for (int64_t t : ids) print0("%lld\n", static_cast<long long>(t));
  }
  return 0;
}

}  // namespace ds
