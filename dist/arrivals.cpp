#include "dist/arrivals.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <numeric>
#include <thread>

#include "dist/check.h"

namespace ds {

namespace {
constexpr int kTag = 0;  // the duplicate carries nothing else
char g_nothing = 0;      // a valid address for zero-byte messages

// Open channels, drained by the watchdog thread. The lock also orders channel destruction and
// MPI_Finalize after any drain in progress. Never destroyed: the watchdog thread is detached and
// still runs while static objects are destroyed at exit.
struct Registry {
  std::mutex mu;
  bool finalizing = false;
  std::vector<Arrivals*> open;
};
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

// MPI_Finalize deletes MPI_COMM_SELF's attributes first, while MPI still works: from then on the
// watchdog thread must not touch MPI.
int on_finalize(MPI_Comm, int, void*, void*) {
  std::lock_guard<std::mutex> lock(registry().mu);
  registry().finalizing = true;
  return MPI_SUCCESS;
}

void watch_finalize() {
  static std::once_flag once;
  std::call_once(once, [] {
    int key = MPI_KEYVAL_INVALID;
    MPI_CHECK(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, on_finalize, &key, nullptr));
    MPI_CHECK(MPI_Comm_set_attr(MPI_COMM_SELF, key, nullptr));
  });
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}
}  // namespace

std::string explain_stall(uint64_t seq, int self, const std::vector<uint64_t>& heard,
                          const std::vector<int>& world_ranks, double suspended_s) {
  std::vector<size_t> missing, ahead;
  for (size_t j = 0; j < heard.size(); ++j) {
    if (static_cast<int>(j) == self) continue;
    if (heard[j] < seq) missing.push_back(j);
    if (heard[j] > seq) ahead.push_back(j);
  }
  const std::string n = std::to_string(seq);
  const std::string own_stop =
      suspended_s > 0 ? "; this rank was itself suspended for " + seconds(suspended_s) : std::string();
  if (missing.size() == 1) {
    const size_t j = missing[0];
    const std::string last = heard[j] == 0 ? "no collective of this group announced; this is collective " + n
                                           : "last announced collective " + std::to_string(heard[j]) + " of " + n;
    return "rank " + std::to_string(world_ranks[j]) + " has not arrived (" + last + ")" + own_stop;
  }
  if (!missing.empty()) {
    std::string ranks, lasts;
    for (size_t j : missing) {
      ranks += (ranks.empty() ? "" : ", ") + std::to_string(world_ranks[j]);
      lasts += (lasts.empty() ? "" : ", ") + (heard[j] == 0 ? std::string("none") : std::to_string(heard[j]));
    }
    return "ranks " + ranks + " have not arrived (last announced collectives " + lasts + " of " + n + ")" + own_stop;
  }
  // Nobody is missing: this rank must not blame a peer.
  if (!ahead.empty()) {
    const size_t j = ahead[0];
    return "this rank is behind (rank " + std::to_string(world_ranks[j]) + " announced collective " +
           std::to_string(heard[j]) + ", this rank is at " + n + ")" + own_stop;
  }
  if (suspended_s > 0) {
    return "every other rank of the group had arrived; this rank was suspended for " + seconds(suspended_s) +
           ", it is the late one";
  }
  return "every rank of the group has arrived (the collective is stuck inside the communication library, or a "
         "rank stopped inside it)";
}

std::shared_ptr<Arrivals> Arrivals::open(MPI_Comm comm, const std::string& name) {
  int level = MPI_THREAD_SINGLE;
  MPI_CHECK(MPI_Query_thread(&level));
  if (level < MPI_THREAD_MULTIPLE) return nullptr;
  watch_finalize();
  MPI_Comm dup;
  MPI_CHECK(MPI_Comm_dup(comm, &dup));
  MPI_CHECK(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_set_name(dup, name.c_str()));
  int rank = 0, size = 1;
  MPI_CHECK(MPI_Comm_rank(dup, &rank));
  MPI_CHECK(MPI_Comm_size(dup, &size));
  // World ranks name processes the way the launcher and every other message do.
  MPI_Group group, world;
  MPI_CHECK(MPI_Comm_group(dup, &group));
  MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world));
  std::vector<int> mine(size), in_world(size);
  std::iota(mine.begin(), mine.end(), 0);
  MPI_CHECK(MPI_Group_translate_ranks(group, size, mine.data(), world, in_world.data()));
  MPI_CHECK(MPI_Group_free(&group));
  MPI_CHECK(MPI_Group_free(&world));
  for (int j = 0; j < size; ++j) {
    if (in_world[j] == MPI_UNDEFINED) in_world[j] = j;
  }
  return std::shared_ptr<Arrivals>(new Arrivals(dup, rank, std::move(in_world)));
}

Arrivals::Arrivals(MPI_Comm dup, int rank, std::vector<int> world_ranks)
    : comm_(dup), rank_(rank), world_ranks_(std::move(world_ranks)), heard_(world_ranks_.size(), 0) {
  std::lock_guard<std::mutex> lock(registry().mu);
  registry().open.push_back(this);
}

Arrivals::~Arrivals() {
  Registry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  reg.open.erase(std::remove(reg.open.begin(), reg.open.end(), this), reg.open.end());
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!reg.finalizing && !finalized) MPI_Comm_free(&comm_);
}

void Arrivals::announce() {
  // Isend + Request_free: never blocks, even towards a stopped peer; a zero-byte message has no
  // buffer that must outlive the request.
  const int n = static_cast<int>(world_ranks_.size());
  for (int j = 0; j < n; ++j) {
    if (j == rank_) continue;
    MPI_Request req;
    MPI_CHECK(MPI_Isend(&g_nothing, 0, MPI_BYTE, j, kTag, comm_, &req));
    MPI_CHECK(MPI_Request_free(&req));
  }
}

void Arrivals::drain() {
  // Matched probes: safe while the main thread uses the same communicator to send.
  for (;;) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status status;
    MPI_CHECK(MPI_Improbe(MPI_ANY_SOURCE, kTag, comm_, &flag, &msg, &status));
    if (!flag) return;
    MPI_CHECK(MPI_Mrecv(&g_nothing, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE));
    ++heard_[static_cast<size_t>(status.MPI_SOURCE)];
  }
}

void Arrivals::drain_all() {
  Registry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  if (reg.finalizing) return;
  for (Arrivals* a : reg.open) {
    try {
      a->drain();
    } catch (const CommError&) {
      // A peer that is gone shows at the next collective, with its own error; nothing to do here.
    }
  }
}

std::string Arrivals::explain(uint64_t seq, double suspended_s) {
  const auto missing = [&] {
    for (size_t j = 0; j < heard_.size(); ++j) {
      if (static_cast<int>(j) != rank_ && heard_[j] < seq) return true;
    }
    return false;
  };
  try {
    for (int attempt = 0; attempt < 2; ++attempt) {
      {
        std::lock_guard<std::mutex> lock(registry().mu);
        if (registry().finalizing) return "";
        drain();
        if (!missing() || attempt == 1) return explain_stall(seq, rank_, heard_, world_ranks_, suspended_s);
      }
      // A rank that arrived just before the deadline may have its message still in flight.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  } catch (const CommError&) {
  }
  return "";
}

}  // namespace ds
