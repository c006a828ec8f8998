/* interval_seq.pml: the interval notifier's seq protocol (notifier/hub_itree.cc,
 * notifier/interval_subscription.h) with deferred insert/remove, and an HMM-style mirror
 * (mmu/mirror.cc) using ReadBegin/ReadRetry, against two concurrent invalidations. SPIN 6.
 *
 * Properties (assertions, plus SPIN's invalid-end-state check for sleepers that never wake):
 *   P1 no translation installed from a page that an invalidation has started to remove
 *      survives that invalidation's end (checked at the end and at each install);
 *   P2 the tree is never changed while an unlocked walk runs over it (frozen while odd);
 *   P3 after Remove returns, Invalidate never runs on the subscription;
 *   P4 every ReadBegin/Remove sleeper wakes (no invalid end state).
 *
 * What it abstracts, line by line (C++ file:function: statement  ->  model statement):
 *   hub_itree.cc:ItreeStart: lock itree_mu_; ++active; overlap = First(range);
 *       if (overlap) seq |= 1; cur_seq = seq; unlock
 *       -> Invalidator "I start": one atomic step
 *   hub_itree.cc:ItreeStart: walk without the lock: sub->Invalidate(range, cur_seq)
 *       -> walking++ ... Mirror::Invalidate step ... walking--
 *   hub_itree.cc:ItreeStart: Invalidate false && !blockable -> ItreeEnd(); return false
 *       -> the "refused" branch (EAGAIN, nothing swapped)
 *   mirror.cc:Invalidate: lock mu_ (TryLock when !blockable: false); SetSeq(cur_seq);
 *       zap; unlock
 *       -> one atomic step: m_seq = cur; spte_valid = false (or refused)
 *   hub_dispatch.cc:StartInWindow: ItreeStart ok, a classic start fails ->
 *       unwind_interval_on_failure ? ItreeEnd() : leave it open (Linux)
 *       -> the "classic-failed" branch (NO_UNWIND: no itree_end)
 *   the primary (migrate/reclaim): a new page behind the address
 *       -> Invalidator swap: victim = backing; backing = fresh page
 *   hub_itree.cc:ItreeEnd: lock; --active; last && odd: ++seq, notify_all, run the
 *       deferred inserts/removes; unlock
 *       -> itree_end() inside the "I end" atomic step
 *   hub_itree.cc:IntervalInsert: active ? (odd ? defer : seq |= 1, insert) : insert with
 *       sub.seq = seq - 1; otherwise sub.seq = seq
 *       -> Mirror: the insert step
 *   hub_itree.cc:IntervalRemove: odd ? (in tree ? defer, Await(seq != wait_from) :
 *       cancel the pending insert) : remove now
 *       -> Mirror: the remove step, then the blocking wait
 *   hub_itree.cc:IntervalReadBegin: s = sub.seq; if (s == seq) Await(seq != s)
 *       -> atomic { s = m_seq; (s != seq) }
 *   mirror.cc:Fault: ReadBegin; Resolve; CheckRetry hint; lock mu_; ReadRetry(seq) ?
 *       retry : pt_.Map
 *       -> Mirror: read-begin, resolve, hint, then one atomic lock step
 *   mirror.cc:Detach: Remove(); then lock mu_, attached_ = false, zap everything
 *       -> detaching = true at the remove step; the final step: removed, spte_valid = false
 *
 * Abstractions: sequential consistency; every section under itree_mu_ or Mirror::mu_ is
 * one atomic step (none blocks inside; Await releases the lock while it sleeps, as an
 * atomic sequence that blocks in Promela does). One interval subscription (the mirror,
 * one page); NINV (default 2) invalidations, each covering the mirror's page or not,
 * each blockable or not; a non-blockable Invalidate may be refused (TryLock) and a classic
 * start may fail after the interval part succeeded. The mirror inserts once, faults once
 * (retrying without bound), then removes. The tree's shape, multiple intervals, the
 * kMigrate owner filter and Release are not modelled. Exhaustive.
 *
 * Variants (spin -DNAME):
 *   (none)          the code as it is                                  expected: no error
 *   NO_READ_RETRY   the mirror's locked ReadRetry removed               expected: P1 fails
 *   INSERT_AS_IDLE  insert while partially excluded treated as idle    expected: P1 fails
 *                   (no seq |= 1, sub.seq = seq - 1)
 *   NO_DEFER        insert/remove change the tree even while frozen    expected: P2 fails
 *   NO_UNWIND       a classic failure leaves the interval part open    expected: P4 fails
 *                   (Linux; HubOptions::unwind_interval_on_failure = false)
 *   ACCESS_DURING_DETACH  P1 also between Remove's return and Detach's zap
 *                                                                      expected: P1 fails
 *   The last one is a gap, not a mutant: Mirror::Detach zaps only after Remove returned,
 *   and an invalidation that starts in between no longer calls Invalidate, so an entry
 *   AccessPage could still use (it does not check attached_) maps a page being removed.
 *   The default model therefore states the contract "no AccessPage or Fault concurrent
 *   with Detach" (P1 is not asserted once Detach began); mirror.h does not say so yet.
 */

#ifndef NINV
#define NINV 2
#endif
#define NONE 0
#define INSERT 1
#define REMOVE 2

byte seq = 2;                 /* invalidate_seq_ */
byte active_ranges = 0;       /* active_invalidate_ranges_ */
byte walking = 0;             /* unlocked walks in progress */
bool in_tree = false;         /* the mirror's sub is in the tree */
byte deferred = NONE;         /* its deferred operation */
bool removed = false;         /* Remove returned */
bool detaching = false;       /* Detach began (its Remove, then the zap) */
byte m_seq = 0;               /* IntervalSubscription::invalidate_seq_ */
byte backing = 1;             /* the primary's page behind the mirror's address */
byte next_page = 2;
bool spte_valid = false;      /* the mirror's entry */
byte spte_page = 0;
bool removed_and_ended[8];

inline tree_change() {
  assert(walking == 0)        /* P2: the tree is frozen while a walk runs */
}

inline itree_end() {          /* ItreeEnd, under itree_mu_ */
  active_ranges--;
  if
  :: active_ranges == 0 && (seq & 1) != 0 ->
     seq++;
     if
     :: deferred == INSERT -> in_tree = true; deferred = NONE
     :: deferred == REMOVE -> in_tree = false; deferred = NONE
     :: else
     fi
  :: else
  fi
}

proctype Invalidator(byte id) {
  bool covers, blockable, overlap, refused;
  byte cur, victim;
  if :: covers = true :: covers = false fi;
  if :: blockable = true :: blockable = false fi;
  atomic {   /* ItreeStart, locked part */
    active_ranges++;
    overlap = covers && in_tree;
    if :: overlap -> seq = seq | 1 :: else fi;
    cur = seq;
    if :: overlap -> walking++ :: else fi;
    printf("EV I%d start covers=%d overlap=%d\n", id, covers, overlap)
  };
  refused = false;
  if
  :: overlap ->
     atomic {   /* Mirror::Invalidate */
       if
       :: !blockable -> refused = true   /* TryLock failed: false */
       :: true ->
          assert(!removed);              /* P3 */
          assert(in_tree);               /* the walk only meets linked subscriptions */
          m_seq = cur; spte_valid = false
       fi;
       walking--
     };
     if
     :: refused -> atomic { itree_end(); printf("EV I%d refused\n", id) }; goto done
     :: else
     fi
  :: else
  fi;
  /* the classic part: a non-blockable classic start may fail after the interval part */
  if
  :: !blockable ->
#ifndef NO_UNWIND
     atomic { itree_end(); printf("EV I%d classic-failed unwound\n", id) };
#else
     printf("EV I%d classic-failed left open\n", id);
#endif
     goto done
  :: true
  fi;
  if
  :: covers -> atomic { victim = backing; backing = next_page; next_page++ }
  :: else
  fi;
  atomic {
    itree_end();
    if
    :: covers ->
       removed_and_ended[victim] = true;
#ifdef ACCESS_DURING_DETACH
       assert(!(spte_valid && spte_page == victim))   /* P1 at the end, even mid-Detach */
#else
       assert(!(spte_valid && spte_page == victim) || detaching)   /* P1 at the end */
#endif
    :: else
    fi;
    printf("EV I%d end\n", id)
  };
done: skip
}

proctype Mirror() {
  byte s, page, wait_from;
  /* IntervalInsert */
  atomic {
    if
    :: active_ranges != 0 ->
       if
       :: (seq & 1) != 0 ->
#ifdef NO_DEFER
          tree_change(); in_tree = true
#else
          deferred = INSERT
#endif
       :: else ->
#ifdef INSERT_AS_IDLE
          tree_change(); in_tree = true; m_seq = seq - 1; goto inserted
#else
          seq = seq | 1; tree_change(); in_tree = true
#endif
       fi;
       m_seq = seq
    :: else -> m_seq = seq - 1; tree_change(); in_tree = true
    fi;
inserted:
    printf("EV M inserted\n")
  };
  /* Mirror::Fault */
  do
  :: atomic { s = m_seq; (s != seq) };           /* ReadBegin (sleeps while equal) */
     atomic { page = backing };                   /* Resolve */
     if
     :: m_seq != s -> goto again                  /* CheckRetry hint */
     :: else
     fi;
     atomic {                                     /* lock mu_; ReadRetry; install */
#ifndef NO_READ_RETRY
       if :: m_seq != s -> goto again :: else fi;
#endif
       assert(!removed_and_ended[page]);          /* P1 at the install */
       spte_valid = true; spte_page = page
     };
     break;
again: skip
  od;
  /* Detach: IntervalRemove, then the zap */
  wait_from = 0;
  atomic {
    detaching = true;
    if
    :: (seq & 1) != 0 ->
#ifdef NO_DEFER
       tree_change(); in_tree = false; deferred = NONE
#else
       if
       :: !in_tree -> deferred = NONE           /* cancel the pending insert */
       :: else -> deferred = REMOVE; wait_from = seq
       fi
#endif
    :: else -> tree_change(); in_tree = false
    fi
  };
  if
  :: wait_from != 0 -> atomic { (seq != wait_from) }
  :: else
  fi;
  atomic { removed = true; spte_valid = false }  /* Detach: nothing runs on us any more */
}

init {
  atomic {
    byte i = 0;
    do
    :: i < NINV -> run Invalidator(i); i++
    :: else -> break
    od;
    run Mirror()
  }
}
