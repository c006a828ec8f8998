/* interval_seq.pml: the interval notifier's seq protocol (notifier/hub_itree.cc,
 * notifier/interval_subscription.h) with deferred insert/remove, and an HMM-style mirror
 * (mmu/mirror.cc) using ReadBegin/ReadRetry, against two concurrent invalidations. SPIN 6.
 *
 * Properties (assertions, plus SPIN's invalid-end-state check for sleepers that never wake):
 *   P1 no translation installed from a page that an invalidation has started to remove
 *      survives that invalidation's end (checked at the end and at each install);
 *   P2 the tree is never changed while an unlocked walk runs over it (frozen while odd);
 *   P3 after Remove returns, Invalidate never runs on the subscription;
 *   P4 every ReadBegin/Remove sleeper wakes (no invalid end state);
 *   P5 a fault calls ReadBegin only while the interval is inserted (before Remove began);
 *   P6 no entry once Detach returned.
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
 *   mirror.cc:Fault (EnterFault): reader-lock mu_; attached_? else kFailedPrecondition;
 *       ++faults_in_flight_
 *       -> Faulter: the enter step (attached, in_flight++)
 *   mirror.cc:Fault: ReadBegin; Resolve; CheckRetry hint; lock mu_; attached_? else
 *       detached; ReadRetry(seq) ? retry : pt_.Map; a retry checks attached_ first; ExitFault
 *       -> Faulter: read-begin (asserts Remove has not begun: it needs the interval
 *          inserted), resolve, hint, then one atomic lock step; in_flight-- on every exit
 *   mirror.cc:Detach: lock mu_; attached_ = false; zap everything; unlock; wait for
 *       faults_in_flight_ == 0; Remove()
 *       -> Detacher: the zap step, the drain (in_flight == 0), the remove step and its
 *          wait, then removed = true
 *   mirror.cc:AccessPage: lock mu_; attached_ && entry? use it : Fault
 *       -> not a step: P1 asserts at each end that no entry (which AccessPage would use)
 *          maps the page that end removed, during Detach too
 *
 * Abstractions: sequential consistency; every section under itree_mu_ or Mirror::mu_ is
 * one atomic step (none blocks inside; Await releases the lock while it sleeps, as an
 * atomic sequence that blocks in Promela does). One interval subscription (the mirror,
 * one page); NINV (default 2) invalidations, each covering the mirror's page or not,
 * each blockable or not; a non-blockable Invalidate may be refused (TryLock) and a classic
 * start may fail after the interval part succeeded. The mirror inserts once, faults once
 * (retrying without bound), then detaches; with ACCESS_DURING_DETACH the fault runs
 * concurrently with Detach (it may start before, finish after, or find it begun). The
 * tree's shape, multiple intervals, the kMigrate owner filter and Release are not
 * modelled. Exhaustive.
 *
 * Variants (spin -DNAME):
 *   (none)          the code as it is                                  expected: no error
 *   ACCESS_DURING_DETACH  the fault (and so AccessPage) concurrent with Detach
 *                                                                      expected: no error
 *   NO_READ_RETRY   the mirror's locked ReadRetry removed               expected: P1 fails
 *   INSERT_AS_IDLE  insert while partially excluded treated as idle    expected: P1 fails
 *                   (no seq |= 1, sub.seq = seq - 1)
 *   NO_DEFER        insert/remove change the tree even while frozen    expected: P2 fails
 *   NO_UNWIND       a classic failure leaves the interval part open    expected: P4 fails
 *                   (Linux; HubOptions::unwind_interval_on_failure = false)
 *   OLD_DETACH_ORDER  Detach as it was: Remove(), then zap (no drain)  expected: P1 fails
 *                   (an invalidation that starts after Remove reaches nobody while the
 *                   entry still maps its page, the gap this model found)
 *   NO_FAULT_DRAIN  with ACCESS_DURING_DETACH: Detach removes without waiting for faults
 *                   in flight                                          expected: P5 fails
 *   NO_DETACHED_CHECK  with ACCESS_DURING_DETACH: the fault's locked attached_ check
 *                   removed                                            expected: P6 fails
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
bool remove_began = false;    /* Detach called Remove */
bool attached = false;        /* Mirror::attached_ */
byte in_flight = 0;           /* Mirror::faults_in_flight_ */
bool fault_done = false;
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
       assert(!(spte_valid && spte_page == victim))   /* P1 at the end, also mid-Detach */
    :: else
    fi;
    printf("EV I%d end\n", id)
  };
done: skip
}

proctype Faulter() {   /* Mirror::Fault */
  byte s, page;
  atomic {                                       /* EnterFault: under mu_ (shared) */
    if
    :: !attached -> printf("EV F detached\n"); goto out   /* kFailedPrecondition */
    :: else -> in_flight++
    fi
  };
  do
  :: atomic { assert(!remove_began);             /* P5: ReadBegin needs the interval */
              s = m_seq; (s != seq) };           /* ReadBegin (sleeps while equal) */
     atomic { page = backing };                   /* Resolve */
     if
     :: m_seq != s -> goto again                  /* CheckRetry hint */
     :: else
     fi;
     atomic {                                     /* lock mu_; attached_?; ReadRetry; install */
#ifndef NO_DETACHED_CHECK
       if :: !attached -> printf("EV F detached\n"); goto exit :: else fi;
#endif
#ifndef NO_READ_RETRY
       if :: m_seq != s -> goto again :: else fi;
#endif
       assert(!removed_and_ended[page]);          /* P1 at the install */
       spte_valid = true; spte_page = page;
       printf("EV F installed page=%d\n", page)
     };
     break;
again:
     atomic {                                     /* a retry checks attached_ */
       if :: !attached -> printf("EV F detached\n"); goto exit :: else fi
     }
  od;
exit:
  in_flight--;                                   /* ExitFault */
out:
  fault_done = true
}

proctype Mirror() {
  byte wait_from;
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
    /* Attach sets attached_ under mu_ after Insert returned; no step of the model
       reads it in between (the fault starts after Attach), so one step. */
    attached = true;
    printf("EV M inserted\n")
  };
  run Faulter();
#ifndef ACCESS_DURING_DETACH
  (fault_done);                                  /* the fault returns before Detach */
#endif
  /* Detach */
#ifndef OLD_DETACH_ORDER
  atomic { attached = false; spte_valid = false; printf("EV M zapped\n") };  /* under mu_ */
#ifndef NO_FAULT_DRAIN
  (in_flight == 0);                              /* wait for faults in flight */
#endif
#endif
  wait_from = 0;
  atomic {   /* IntervalRemove */
    remove_began = true;
    printf("EV M remove\n");
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
#ifdef OLD_DETACH_ORDER
  atomic { removed = true; printf("EV M removed\n") };
  atomic { attached = false; spte_valid = false; printf("EV M zapped\n") }   /* then the zap */
#else
  atomic { removed = true; printf("EV M removed\n") };
#endif
  assert(!spte_valid)                            /* P6: no entry once Detach returned */
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
