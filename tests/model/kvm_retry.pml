/* kvm_retry.pml: KVM's in_progress/seq retry protocol between one fault path and two
 * invalidations (mmu/secondary_mmu.cc, mmu/invalidate_state.cc). SPIN 6.
 *
 * Property (assertions): no translation installed from a page that an invalidation has
 * started to remove survives that invalidation's end:
 *   - at each end: the spte of the faulting gfn does not map the page this window removed;
 *   - at each install: the page is not one whose removing window has already ended.
 *
 * What it abstracts, line by line (C++ file:function: statement  ->  model statement):
 *   invalidate_state.cc:SnapshotSeq: seq_.load(acquire)
 *       -> Fault "F snap": snap = seq
 *   secondary_mmu.cc:Fault step 2: if (checks && RetryGfnUnsafe(snapshot, gfn)) continue
 *       -> Fault "F precheck": LOCKLESS(r) = RETRY_UNSAFE
 *   secondary_mmu.cc:Fault step 3: primary_.Resolve(address, access)
 *       -> Fault "F resolve": page = backing[G]
 *   secondary_mmu.cc:Fault re-check: if (checks && RetryGfnUnsafe(snapshot, gfn)) continue
 *       -> Fault "F recheck": LOCKLESS(r) = RETRY_UNSAFE
 *   secondary_mmu.cc:Fault step 4: MutexLock(&mu_); if (RetryGfn(mu_, snapshot, gfn))
 *       continue; spt_.Map(gfn, entry)
 *       -> Fault "F lock": atomic { RETRY_LOCKED(r); r ? retry : spte = page }
 *   invalidate_state.cc:RetryGfnUnsafe: in_progress > 0 && start <= gfn < end, or
 *       seq != snapshot (no kNoRange case: ~0 bounds never match)
 *       -> RETRY_UNSAFE
 *   invalidate_state.cc:RetryGfn: in_progress > 0 && (start == kNoRange || gfn in range),
 *       or seq != snapshot
 *       -> RETRY_LOCKED
 *   secondary_mmu.cc:InvalidateRangeStart: ActiveInvalidationBegin; lock mu_; Begin;
 *       RangeAdd per slot range; ZapRange; unlock
 *       -> Invalidator "I start": atomic { in_progress++; reset range if first; union; zap }
 *   invalidate_state.cc:Begin: if (count == 1) range = kNoRange
 *       -> if :: in_progress == 1 -> rstart = rend = NONE
 *   invalidate_state.cc:RangeAdd: first range, or min/max union
 *       -> rstart/rend union
 *   the primary (tests/mmu/fake_address_space.cc:SwapBacking, vmm/host migrate/reclaim):
 *       a new page behind the address
 *       -> Invalidator "I swap": victim = backing[g]; backing[g] = fresh page
 *   secondary_mmu.cc:InvalidateRangeEnd -> invalidate_state.cc:End: lock mu_; seq++
 *       (release); in_progress-- (release); unlock; ActiveInvalidationEnd
 *       -> Invalidator "I end": atomic { seq++; in_progress-- }
 *
 * Abstractions (what the model does NOT cover):
 *   - Memory model: sequential consistency. Every section under SecondaryMmu::mu_ is one
 *     atomic step (the sections never block inside, so any execution is equivalent to one
 *     where they do not overlap), and the locked RetryGfn reads under the same lock as
 *     every writer, so SC is exact for it. The lockless checks are hints: variant
 *     LOCKLESS_ANY lets them return anything (a stale read of any kind) and NO_LOCKLESS
 *     drops them; both must still verify, so correctness rests on the locked RetryGfn
 *     alone. Assumed, not checked: a Resolve after a snapshot that saw End's seq sees the
 *     primary's change (SnapshotSeq's acquire pairs with End's release; the TSan build
 *     checks that pairing in the C++).
 *   - Layout (slots, ActiveInvalidation*, UpdateLayout), released_, Resolve errors, access
 *     bits, the shadow table's shape: one spte for the faulting gfn G = 0; gfn 1 exists so
 *     that concurrent windows form a range union that may or may not cover G.
 *   - Fault retries are unbounded (no retry_timeout); invalidations: NINV (2), each on gfn
 *     0 or 1 (chosen nondeterministically), all concurrent with the fault and each other.
 *
 * Variants (spin -DNAME):
 *   (none)          the code as it is                    expected: no error
 *   LOCKLESS_ANY    lockless checks return anything      expected: no error
 *   NO_LOCKLESS     lockless checks removed              expected: no error
 *   NO_SEQ_RECHECK  RetryGfn without "seq != snapshot"   expected: counterexample
 *   NO_RETRY_GFN    the locked RetryGfn removed          expected: counterexample
 *   NO_RANGE_UNION  Begin resets the range every time    expected: counterexample
 *
 * Every step prints one "EV ..." line; tests/model/run turns each mutant's shortest trail
 * into tests/model/trails/kvm_retry.<MUTANT>.events, which
 * tests/mmu/model_trail_replay_test.cc replays against the real SecondaryMmu.
 */

#ifndef NINV
#define NINV 2
#endif
#define G    0      /* the gfn the fault path faults on */
#define NONE 255    /* kNoRange */

byte seq = 0;                 /* InvalidateState::seq_ */
byte in_progress = 0;         /* InvalidateState::in_progress_ */
byte rstart = NONE;           /* range_start_ */
byte rend = NONE;             /* range_end_ */
byte backing[2];              /* the primary: current page of gfn 0 and gfn 1 */
byte next_page = 3;           /* fresh pages are never reused */
bool spte_valid = false;      /* the shadow entry of G */
byte spte_page = 0;
bool removed_and_ended[8];    /* page p was removed by a window that has ended */

inline RETRY_UNSAFE(r) {
  r = ((in_progress > 0 && rstart != NONE && G >= rstart && G < rend) || seq != snap)
}

inline RETRY_LOCKED(r) {
#ifdef NO_RETRY_GFN
  r = false
#else
  r = (in_progress > 0 && (rstart == NONE || (G >= rstart && G < rend)));
#ifndef NO_SEQ_RECHECK
  r = r || (seq != snap)
#endif
#endif
}

/* One lockless check: the real one, or (LOCKLESS_ANY) any answer at all. */
inline LOCKLESS(r) {
#if defined(NO_LOCKLESS)
  r = false
#elif defined(LOCKLESS_ANY)
  if :: r = true :: r = false fi
#else
  RETRY_UNSAFE(r)
#endif
}

active proctype Fault() {
  byte snap, page;
  bool r;
  do
  :: atomic { snap = seq; printf("EV F snap\n") };
     atomic {
       LOCKLESS(r);
       if
       :: r -> printf("EV F precheck retry\n")
       :: else -> printf("EV F precheck pass\n")
       fi
     };
     if
     :: r -> goto again
     :: else
     fi;
     atomic { page = backing[G]; printf("EV F resolve\n") };
     atomic {
       LOCKLESS(r);
       if
       :: r -> printf("EV F recheck retry\n")
       :: else -> printf("EV F recheck pass\n")
       fi
     };
     if
     :: r -> goto again
     :: else
     fi;
     atomic {
       RETRY_LOCKED(r);
       if
       :: r -> printf("EV F lock retry\n")
       :: else ->
          assert(!removed_and_ended[page]);   /* installs a page an ended window removed */
          spte_valid = true; spte_page = page;
          printf("EV F lock install\n")
       fi
     };
     if
     :: r -> goto again
     :: else -> break
     fi;
again: skip
  od
}

proctype Invalidator(byte id) {
  byte g, victim;
  if
  :: g = 0
  :: g = 1
  fi;
  atomic {
    in_progress++;
#ifdef NO_RANGE_UNION
    rstart = NONE; rend = NONE;
#else
    if
    :: in_progress == 1 -> rstart = NONE; rend = NONE
    :: else
    fi;
#endif
    if
    :: rstart == NONE -> rstart = g; rend = g + 1
    :: else ->
       if :: g < rstart -> rstart = g :: else fi;
       if :: g + 1 > rend -> rend = g + 1 :: else fi
    fi;
    if :: g == G -> spte_valid = false :: else fi;   /* ZapRange */
    printf("EV I%d start %d\n", id, g)
  };
  atomic {
    victim = backing[g]; backing[g] = next_page; next_page++;
    printf("EV I%d swap %d\n", id, g)
  };
  atomic {
    seq++; in_progress--;
    removed_and_ended[victim] = true;
    assert(!(g == G && spte_valid && spte_page == victim));   /* survives the end */
    printf("EV I%d end %d\n", id, g)
  }
}

init {
  atomic {
    backing[0] = 1; backing[1] = 2;
    byte i = 0;
    do
    :: i < NINV -> run Invalidator(i); i++
    :: else -> break
    od
  }
}
