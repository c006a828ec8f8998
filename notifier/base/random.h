// Seeded, reproducible randomness for the host side: SplitMix64's output function and the
// draws built on it. Stateless (a draw is a function of seed and draw number), so threads
// share a stream through one atomic counter and need no lock.
//
// The guests carry their own C copy of the same mixer (guests/memstress/memstress_shared.h:
// freestanding code cannot include this header); the stress workload's host side derives the
// guests' patterns through that shared C header, never through this one.
#ifndef MMUVISOR_NOTIFIER_BASE_RANDOM_H_
#define MMUVISOR_NOTIFIER_BASE_RANDOM_H_

#include <cstdint>

namespace mmuvisor {

// SplitMix64 (Steele, Lea, Flood 2014): a bijective 64-bit mix, good enough to drive
// tests and fault injection, not for anything an adversary sees.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// True with probability p for the n-th draw of stream `seed` (p <= 0: never; p >= 1:
// always).
inline bool Chance(uint64_t seed, uint64_t n, double p) {
  if (p <= 0) return false;
  if (p >= 1) return true;
  return static_cast<double>(Mix64(seed ^ Mix64(n)) >> 11) * 0x1.0p-53 < p;
}

}  // namespace mmuvisor

#endif  // MMUVISOR_NOTIFIER_BASE_RANDOM_H_
