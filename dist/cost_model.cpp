#include "dist/cost_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ds {

namespace {
double ring_steps(CollectiveOp op, int n) {
  switch (op) {
    case CollectiveOp::AllReduce: return 2.0 * (n - 1);
    case CollectiveOp::Barrier: return 2.0 * std::ceil(std::log2(n));
    default: return n - 1.0;
  }
}
}  // namespace

double collective_us(CollectiveOp op, int64_t bytes, int n, const LinkModel& link) {
  if (n <= 1) return 0.0;
  if (link.busbw_gbps <= 0) throw std::invalid_argument("link model without a bandwidth (" + link.source + ")");
  const double us_per_byte = 1.0 / (link.busbw_gbps * 1e3);  // GB/s = 1e3 bytes per microsecond
  const double ring = ring_steps(op, n) * link.alpha_us + wire_bytes_for(op, bytes, n) * us_per_byte;
  if (op != CollectiveOp::AllReduce) return ring;
  const double tree = 2.0 * std::ceil(std::log2(n)) * link.alpha_us + 2.0 * bytes * us_per_byte;
  return std::min(ring, tree);
}

double records_us(const std::vector<CommRecord>& records, const Fabric& fabric, const std::string& group) {
  double us = 0;
  for (const auto& r : records) {
    if (!group.empty() && r.group != group) continue;
    us += collective_us(collective_op(r.op), r.bytes, r.group_size, fabric.link_for(r.group));
  }
  return us;
}

LinkModel fit_link(const std::vector<CommSample>& samples) {
  // us = steps·alpha + wire·inv_bw, divided through by us: rows [steps/us, wire/us] · x = 1.
  double a11 = 0, a12 = 0, a22 = 0, b1 = 0, b2 = 0;
  int used = 0;
  for (const auto& s : samples) {
    if (s.us <= 0 || s.ranks < 2) continue;
    const CollectiveOp op = collective_op(s.op);
    const double x1 = ring_steps(op, s.ranks) / s.us;
    const double x2 = wire_bytes_for(op, s.bytes, s.ranks) / s.us;
    a11 += x1 * x1;
    a12 += x1 * x2;
    a22 += x2 * x2;
    b1 += x1;
    b2 += x2;
    ++used;
  }
  if (used < 2) throw std::invalid_argument("fit: need at least two measured sizes with 2 or more ranks");
  const double det = a11 * a22 - a12 * a12;
  double alpha = 0, inv_bw = 0;
  if (std::abs(det) > 1e-30 * a11 * a22) {
    alpha = (b1 * a22 - b2 * a12) / det;
    inv_bw = (a11 * b2 - a12 * b1) / det;
  }
  // A negative coefficient means the data cannot separate the two terms; refit with one of them.
  if (alpha < 0 || inv_bw <= 0) {
    if (inv_bw <= 0) {
      alpha = b1 / a11;
      inv_bw = 0;
    } else {
      alpha = 0;
      inv_bw = b2 / a22;
    }
  }
  if (inv_bw <= 0) throw std::invalid_argument("fit: the samples show no bandwidth term (all sizes too small?)");
  LinkModel m;
  m.alpha_us = alpha;
  m.busbw_gbps = 1.0 / (inv_bw * 1e3);
  m.source = "fitted to " + std::to_string(used) + " measured sizes";
  return m;
}

}  // namespace ds
