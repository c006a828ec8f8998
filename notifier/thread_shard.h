// notifier/thread_shard.h: which counter shard the calling thread uses (internal).
//
// Threads get shards round-robin on first use, so up to kShards threads never share a
// cache line in SrcuDomain or WindowGate. Also a polite wait used by their slow paths.
#ifndef MMUVISOR_NOTIFIER_THREAD_SHARD_H_
#define MMUVISOR_NOTIFIER_THREAD_SHARD_H_

namespace mmuvisor::notifier::internal {

// In [0, shards). REQUIRES: shards is a power of two.
int ThreadShard(int shards);
// Backoff step `round` of a wait loop: yields first, then sleeps up to 100 us.
void WaitStep(int round);

}  // namespace mmuvisor::notifier::internal

#endif  // MMUVISOR_NOTIFIER_THREAD_SHARD_H_
