#include "dist/ledger.h"

#include <stdexcept>

namespace ds {

CollectiveOp collective_op(const std::string& name) {
  if (auto op = enum_from<CollectiveOp>(name)) return *op;
  throw std::invalid_argument("unknown collective '" + name + "'");
}

double wire_bytes_for(CollectiveOp op, int64_t bytes, int n) {
  if (n <= 1) return 0.0;
  const double s = static_cast<double>(bytes);
  switch (op) {
    case CollectiveOp::AllReduce: return 2.0 * (n - 1) / n * s;
    case CollectiveOp::ReduceScatter: return static_cast<double>(n - 1) / n * s;
    case CollectiveOp::AllGather: return static_cast<double>(n - 1) * s;
    case CollectiveOp::Broadcast: return s;
    case CollectiveOp::Barrier: return 0.0;
  }
  return 0.0;
}

void Ledger::record(CommRecord r) {
  std::lock_guard<std::mutex> lock(mu_);
  if (r.phase.empty()) r.phase = phase_;
  records_.push_back(std::move(r));
}

void Ledger::set_phase(const std::string& phase) {
  std::lock_guard<std::mutex> lock(mu_);
  phase_ = phase;
}

std::string Ledger::phase() const {
  std::lock_guard<std::mutex> lock(mu_);
  return phase_;
}

size_t Ledger::mark() const {
  std::lock_guard<std::mutex> lock(mu_);
  return records_.size();
}

std::vector<CommRecord> Ledger::since(size_t mark) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (mark >= records_.size()) return {};
  return std::vector<CommRecord>(records_.begin() + static_cast<long>(mark), records_.end());
}

void Ledger::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  records_.clear();
}

CommTotals sum_records(const std::vector<CommRecord>& records, const std::string& group,
                       const std::string& phase, const std::string& tag_prefix) {
  CommTotals t;
  for (const auto& r : records) {
    if (!group.empty() && r.group != group) continue;
    if (!phase.empty() && r.phase != phase) continue;
    if (r.tag.compare(0, tag_prefix.size(), tag_prefix) != 0) continue;
    t.add(r);
  }
  return t;
}

CommTotals LedgerScope::total(const std::string& group, const std::string& phase,
                              const std::string& tag_prefix) const {
  return sum_records(records(), group, phase, tag_prefix);
}

std::map<std::string, CommTotals> LedgerScope::by_tag() const {
  std::map<std::string, CommTotals> out;
  for (const auto& r : records()) out[r.tag].add(r);
  return out;
}

}  // namespace ds
