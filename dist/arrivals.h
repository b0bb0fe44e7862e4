// Who has reached which collective of a group, so that a timeout can name the rank that stalled.
// Before entering collective #k of a group, a rank sends every other rank of the group a zero-byte
// message on a duplicate of the group's communicator; k is simply the number of messages received
// from that rank (MPI never reorders messages between two ranks on one communicator).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ds {

class Arrivals {
 public:
  // Collective over `comm` (duplicates it; `comm` stays the caller's). nullptr when MPI was not
  // initialised with MPI_THREAD_MULTIPLE: the watchdog thread must receive while the main thread
  // waits inside the collective, and without that level no names can be given.
  static std::shared_ptr<Arrivals> open(MPI_Comm comm, const std::string& name);
  ~Arrivals();
  Arrivals(const Arrivals&) = delete;
  Arrivals& operator=(const Arrivals&) = delete;

  // Main thread, before entering the next collective of the group: never blocks.
  void announce();
  // Watchdog thread, at a timeout of collective `seq` (1-based): receives what has arrived, waits
  // briefly for messages still in flight when a rank looks missing, and says who has not arrived.
  // `suspended_s` > 0: this process itself was stopped that long just before or during the wait.
  std::string explain(uint64_t seq, double suspended_s);
  // Watchdog thread, periodically: receives pending announcements on every open channel, so that
  // MPI's queue of unexpected messages stays short.
  static void drain_all();

 private:
  Arrivals(MPI_Comm dup, int rank, std::vector<int> world_ranks);
  void drain();  // with the channel registry's lock held

  MPI_Comm comm_;
  int rank_;
  std::vector<int> world_ranks_;  // group rank -> world rank, for messages
  std::vector<uint64_t> heard_;   // per group rank: collectives it announced (watchdog thread only)
};

// What a rank whose collective #seq timed out says, from the announcements it has (`heard`, per
// group rank; its own entry is ignored): the ranks that have not arrived, or, when every rank has,
// that it was itself the late one (when `suspended_s` > 0) or that the collective is stuck inside
// the library. Ranks are printed as world ranks. A pure function, for tests.
std::string explain_stall(uint64_t seq, int self, const std::vector<uint64_t>& heard,
                          const std::vector<int>& world_ranks, double suspended_s);

}  // namespace ds
