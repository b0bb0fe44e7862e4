#include "data/sft_dataset.h"

#include <algorithm>
#include <random>

#include "core/errors.h"

namespace ds {

bool fit_example(Example& e, int64_t len, Truncate how, bool& truncated) {
  truncated = false;
  const int64_t n = static_cast<int64_t>(e.ids.size());
  if (n <= len) return true;
  if (how == Truncate::Drop) return false;
  // The cut must leave the token before the first target, or the response loses its start.
  const int64_t cut = n - len;
  const auto first = std::find(e.counted.begin(), e.counted.end(), uint8_t{1}) - e.counted.begin();
  if (cut >= first) return false;
  e.ids.erase(e.ids.begin(), e.ids.begin() + cut);
  e.counted.erase(e.counted.begin(), e.counted.begin() + cut);
  truncated = true;
  return true;
}

std::vector<Row> make_rows(const std::vector<Example>& examples, int64_t len, bool packing) {
  std::vector<Row> rows;
  for (const auto& e : examples) {
    const auto n = static_cast<int64_t>(e.ids.size());
    if (rows.empty() || !packing || static_cast<int64_t>(rows.back().ids.size()) + n > len) rows.emplace_back();
    Row& r = rows.back();
    r.starts.push_back(static_cast<int64_t>(r.ids.size()));
    r.ids.insert(r.ids.end(), e.ids.begin(), e.ids.end());
    r.counted.insert(r.counted.end(), e.counted.begin(), e.counted.end());
  }
  return rows;
}

Batch make_batch(const std::vector<const Row*>& rows, bool packing) {
  const auto n = static_cast<int64_t>(rows.size());
  int64_t len = 0;
  for (const Row* r : rows) len = std::max<int64_t>(len, static_cast<int64_t>(r->ids.size()));
  Batch b;
  if (n == 0 || len < 2) throw std::runtime_error("make_batch: no sequence of two tokens or more");
  const int64_t T = len - 1;
  b.x = torch::zeros({n, T}, torch::kLong);
  b.y = torch::full({n, T}, -100, torch::kLong);
  if (packing) {
    b.positions = torch::zeros({n, T}, torch::kLong);
    b.segments = torch::zeros({n, T}, torch::kLong);
  }
  for (int64_t i = 0; i < n; ++i) {
    const Row& r = *rows[static_cast<size_t>(i)];
    const auto m = static_cast<int64_t>(r.ids.size());
    int64_t* x = b.x[i].data_ptr<int64_t>();
    int64_t* y = b.y[i].data_ptr<int64_t>();
    for (int64_t t = 0; t < m && t < T; ++t) x[t] = r.ids[static_cast<size_t>(t)];
    for (int64_t t = 1; t < m; ++t) {
      if (r.counted[static_cast<size_t>(t)]) {
        y[t - 1] = r.ids[static_cast<size_t>(t)];
        ++b.counted;
      }
    }
    if (!packing) continue;
    int64_t* pos = b.positions[i].data_ptr<int64_t>();
    int64_t* seg = b.segments[i].data_ptr<int64_t>();
    size_t s = 0;
    for (int64_t t = 0; t < T; ++t) {
      while (s + 1 < r.starts.size() && t >= r.starts[s + 1]) ++s;
      // Padding after the last example is a segment of its own: no example attends to it.
      const bool pad = t >= m;
      seg[t] = pad ? static_cast<int64_t>(r.starts.size()) : static_cast<int64_t>(s);
      pos[t] = pad ? t - m : t - r.starts[s];
    }
  }
  return b;
}

SftDataset SftDataset::from_examples(std::vector<Example> train, std::vector<Example> val, int64_t seq_len,
                                     bool packing) {
  SftDataset d;
  d.seq_len_ = seq_len;
  d.packing_ = packing;
  d.train_ = std::move(train);
  d.val_ = std::move(val);
  d.train_rows_ = make_rows(d.train_, seq_len + 1, packing);
  d.val_rows_ = make_rows(d.val_, seq_len + 1, packing);
  SftStats& s = d.stats_;
  s.examples = static_cast<int64_t>(d.train_.size() + d.val_.size());
  s.val_examples = static_cast<int64_t>(d.val_.size());
  int64_t train_tokens = 0;
  for (const auto* part : {&d.train_, &d.val_}) {
    for (const auto& e : *part) {
      s.tokens += static_cast<int64_t>(e.ids.size());
      s.counted += e.num_counted();
      if (part == &d.train_) train_tokens += static_cast<int64_t>(e.ids.size());
    }
  }
  s.train_rows = d.num_train_rows();
  if (s.train_rows > 0) {
    s.packing_efficiency = static_cast<double>(train_tokens) / static_cast<double>(s.train_rows * (seq_len + 1));
  }
  return d;
}

SftEncoded encode_sft(const DataConfig& cfg, const Codec& codec, int64_t seq_len) {
  if (cfg.paths.empty()) throw ConfigError("data.path: is required");
  codec.check(cfg.chat_template);
  SftEncoded out;
  SftStats& counts = out.counts;
  out.files = expand_paths(cfg.paths);
  for (const auto& f : out.files) {
    Schema schema = cfg.schema;
    RecordCounts rc;
    const std::vector<Record> records = read_jsonl(f, schema, rc);
    counts.records += rc.lines;
    counts.skipped_empty += rc.skipped_empty;
    std::vector<Example> kept;
    for (const auto& r : records) {
      Example e = encode_pieces(render(cfg.chat_template, r), codec, cfg.chat_template, false);
      bool truncated = false;
      if (!fit_example(e, seq_len + 1, cfg.truncate, truncated)) {
        ++counts.dropped;
        continue;
      }
      counts.truncated += truncated;
      if (cfg.train_on_inputs) std::fill(e.counted.begin() + 1, e.counted.end(), uint8_t{1});
      kept.push_back(std::move(e));
    }
    const auto n_val = static_cast<size_t>(static_cast<double>(kept.size()) * cfg.val_fraction);
    const size_t cut = kept.size() - n_val;
    out.train.insert(out.train.end(), std::make_move_iterator(kept.begin()), std::make_move_iterator(kept.begin() + static_cast<std::ptrdiff_t>(cut)));
    out.val.insert(out.val.end(), std::make_move_iterator(kept.begin() + static_cast<std::ptrdiff_t>(cut)), std::make_move_iterator(kept.end()));
  }
  return out;
}

SftDataset SftDataset::load(const DataConfig& cfg, const Codec& codec, int64_t seq_len) {
  return from_encoded(encode_sft(cfg, codec, seq_len), seq_len, cfg.packing);
}

SftDataset SftDataset::from_encoded(SftEncoded e, int64_t seq_len, bool packing) {
  const SftStats& counts = e.counts;
  if (e.train.empty()) {
    const auto& files = e.files;
    throw FileError((files.empty() ? std::string("data.path") : files.front()) + (files.size() > 1 ? ", ..." : "") +
                    ": no training example left (" + std::to_string(counts.records) + " records, " +
                    std::to_string(counts.skipped_empty) + " with empty responses, " + std::to_string(counts.dropped) +
                    " longer than train.seq_len + 1 = " + std::to_string(seq_len + 1) + " tokens)");
  }
  SftDataset d = from_examples(std::move(e.train), std::move(e.val), seq_len, packing);
  d.files_ = std::move(e.files);
  const SftStats s = d.stats_;
  d.stats_ = counts;
  d.stats_.examples = s.examples;
  d.stats_.val_examples = s.val_examples;
  d.stats_.tokens = s.tokens;
  d.stats_.counted = s.counted;
  d.stats_.train_rows = s.train_rows;
  d.stats_.packing_efficiency = s.packing_efficiency;
  return d;
}

const std::vector<int64_t>& SftDataset::epoch_order(uint64_t seed, int64_t epoch) const {
  if (order_epoch_ != epoch || order_seed_ != seed) {
    order_.resize(train_rows_.size());
    for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(i);
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch));
    // Fisher-Yates by hand: std::shuffle's draws differ between standard libraries.
    for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng() % i]);
    order_epoch_ = epoch;
    order_seed_ = seed;
  }
  return order_;
}

Batch SftDataset::train_batch(uint64_t seed, int64_t first, int64_t count) const {
  const int64_t n = num_train_rows();
  std::vector<const Row*> rows;
  for (int64_t g = first; g < first + count; ++g) {
    rows.push_back(&train_rows_[static_cast<size_t>(epoch_order(seed, g / n)[static_cast<size_t>(g % n)])]);
  }
  return make_batch(rows, packing_);
}

Batch SftDataset::eval_batch(int64_t first, int64_t count) const {
  std::vector<const Row*> rows;
  for (int64_t i = first; i < first + count; ++i) rows.push_back(&val_rows_[static_cast<size_t>(i)]);
  return make_batch(rows, packing_);
}

}  // namespace ds
