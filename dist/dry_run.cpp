#include "dist/dry_run.h"

#include "dist/check.h"

namespace ds {

ProcessGrid make_dry_run_grid(int dp, int tp) {
  if (dp < 1 || tp < 1) {
    throw CommError("dry-run grid: dp and tp must be >= 1, got dp " + std::to_string(dp) + ", tp " +
                    std::to_string(tp));
  }
  ProcessGrid g;
  g.world_size = dp * tp;
  g.dp = dp;
  g.tp = tp;
  g.ledger = std::make_shared<Ledger>();
  // No timeout: nothing here can hang.
  g.world = std::make_unique<DryRunCommunicator>(dp * tp, CommOptions{"world", 0, g.ledger});
  g.tp_group = std::make_unique<DryRunCommunicator>(tp, CommOptions{"tp", 0, g.ledger});
  g.dp_group = std::make_unique<DryRunCommunicator>(dp, CommOptions{"dp", 0, g.ledger});
  return g;
}

}  // namespace ds
