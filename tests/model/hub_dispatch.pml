/* hub_dispatch.pml: the hub's classic start/end dispatch under each policy, with
 * non-blockable starts that fail (EAGAIN) and a registration racing the windows
 * (notifier/hub.h, notifier/hub_dispatch.cc, notifier/hub.cc). SPIN 6.
 *
 * Property (assertions): per invalidating thread and subscription, every successful start
 * of a subscription that has an end gets exactly one end, and no end comes without a
 * start: an end asserts its start is pending (so a second end fails too), a start asserts
 * none is pending, and each thread asserts nothing is pending when it is done.
 *
 * What it abstracts, line by line (C++ file:function: statement  ->  model statement):
 *   hub.cc:CheckOpCombination: kStartMayFail together with an end is rejected
 *       -> kinds KVM (start+end, never fails), MAYFAIL (start only, kAgain when
 *          non-blockable), START (start only, never fails)
 *   hub.cc:PublishLocked: subs = linked_ newest first; kSortedEndLast: stable_partition
 *       with the end-needers last; starters/enders filtered in that order
 *       -> publish(): list[] from linked[]
 *   hub.cc:LinkLocked: gate_.Close() (stop new windows, wait for open ones); link;
 *       PublishLocked(); gate_.Open()
 *       -> Registrar: closed = true; (open_windows == 0); link + publish; closed = false
 *   window_gate.h:Enter / hub_dispatch.cc:StartSlow: a blockable start waits while the
 *       gate is closed, a non-blockable one returns Unavailable with nothing started
 *       -> Walker: the two guarded gate entries
 *   hub.h:InvalidateRangeStart: list_.load(acquire) inside an SRCU read section
 *       -> Walker: snap[] = list[] (one step)
 *   hub.h:ClassicStartWalk: kSortedEndLast && !blockable && end_needers >= 2 -> refuse
 *       -> POLICY_SORTED: the "refused up front" branch
 *   hub.h:ClassicStartWalk: per starter: result = InvalidateRangeStart(range); kAgain and
 *       !blockable -> ClassicStartFailed(list, i, range)
 *       -> Walker: start_one(snap[i], ok), one step per callback
 *   hub_dispatch.cc:ClassicStartFailed: kSortedEndLast returns at once
 *       -> POLICY_SORTED: nothing more
 *   hub_dispatch.cc:ClassicStartFailed: kUpstream/kLegacyUnpaired call the remaining starts
 *       -> loop over snap[i+1..]
 *   hub_dispatch.cc:ClassicStartFailed: kUpstream calls end on every ender of that list
 *       -> POLICY_UPSTREAM: end_one over snap[]; POLICY_LEGACY: nothing
 *   hub.h:InvalidateRangeStart: failed -> gate exit, Unavailable (the caller calls no end)
 *       -> Walker: open_windows--, done
 *   hub.h:InvalidateRangeEnd: list_.load(acquire) in a new SRCU section; ClassicEndWalk over
 *       enders; gate exit
 *       -> Walker: snap[] reloaded; end_one per KVM sub; open_windows--
 *
 * Abstractions: sequential consistency (the gate's and SRCU's store-buffering pairs are
 * assumed correct: each is one atomic step here); no interval subscriptions (see
 * interval_seq.pml), no unregister/put/release, no nesting; a blockable start never fails
 * (MAYFAIL fails only when non-blockable, as the contract says; the hub's handling of a
 * contract-breaking blockable failure is not modelled); the PairingChecker is replaced by
 * the assertions. Bounds: 3 subscriptions registered before the run, each of any kind
 * (3^3 lists), one KVM-like subscription registered during the run, 2 invalidating
 * threads, each blockable or not, each making one start (and end if OK). Exhaustive.
 *
 * Variants (spin -DNAME): exactly one of POLICY_UPSTREAM, POLICY_SORTED, POLICY_LEGACY;
 * plus NO_GATE (registration does not wait for open windows).
 *   POLICY_UPSTREAM, POLICY_SORTED           expected: no error
 *   POLICY_LEGACY                            expected: counterexample (start without end)
 *   POLICY_UPSTREAM + NO_GATE                expected: counterexample (end without start)
 */

#if !defined(POLICY_UPSTREAM) && !defined(POLICY_SORTED) && !defined(POLICY_LEGACY)
#define POLICY_UPSTREAM
#endif

#define NS        4   /* subscriptions: 3 before the run + 1 registered during it */
#define NT        2   /* invalidating threads */
#define KVM       1   /* OpSet::KvmLike(): start + end, never fails */
#define MAYFAIL   2   /* start | kStartMayFail: kAgain when !blockable */
#define START     3   /* start only, never fails */

byte kind[NS];
byte linked[NS];          /* registration order (linked_) */
byte nlinked = 0;
byte list[NS];            /* published dispatch order (list_->starters/enders) */
byte nlist = 0;
byte open_windows = 0;           /* open windows (the gate's counts) */
bool closed = false;      /* the gate's closed bit */
bool pending[NT * NS];    /* thread t's start of sub s succeeded and awaits its end */

/* PublishLocked: newest first; kSortedEndLast keeps the enders last (stable). */
inline publish() {
  byte pj, pk;
  nlist = 0;
#ifdef POLICY_SORTED
  pk = 0;
  do
  :: pk < 2 ->
     pj = nlinked;
     do
     :: pj > 0 ->
        pj--;
        if
        :: (pk == 0 && kind[linked[pj]] != KVM) || (pk == 1 && kind[linked[pj]] == KVM) ->
           list[nlist] = linked[pj]; nlist++
        :: else
        fi
     :: else -> break
     od;
     pk++
  :: else -> break
  od
#else
  pj = nlinked;
  do
  :: pj > 0 -> pj--; list[nlist] = linked[pj]; nlist++
  :: else -> break
  od
#endif
}

inline start_one(sub, res) {   /* sub->InvalidateRangeStart(range) */
  if
  :: kind[sub] == MAYFAIL && !blockable -> res = false   /* kAgain */
  :: else -> res = true
  fi;
  if
  :: res && kind[sub] == KVM -> assert(!pending[t * NS + sub]); pending[t * NS + sub] = true
  :: else
  fi;
  printf("EV T%d start S%d(kind %d) %d\n", t, sub, kind[sub], res)
}

inline end_one(sub) {          /* sub->InvalidateRangeEnd(range) */
  printf("EV T%d end S%d\n", t, sub);
  assert(pending[t * NS + sub]);   /* no end without start, no second end */
  pending[t * NS + sub] = false
}

proctype Walker(byte t) {
  bool blockable, entered, ok, failed;
  byte snap[NS];
  byte n, i, enders;
  if
  :: blockable = true
  :: blockable = false
  fi;
  printf("EV T%d blockable=%d\n", t, blockable);
  /* WindowGate::Enter / StartSlow */
  if
  :: atomic { !closed -> open_windows++; entered = true }
  :: atomic { closed && !blockable -> entered = false }   /* Unavailable, nothing started */
  fi;
  if
  :: !entered -> goto done
  :: else
  fi;
  /* SRCU read section + list_.load(acquire) */
  atomic {
    n = nlist; i = 0; enders = 0;
    do
    :: i < n -> snap[i] = list[i]; if :: kind[snap[i]] == KVM -> enders++ :: else fi; i++
    :: else -> break
    od;
    i = 0; failed = false
  };
#ifdef POLICY_SORTED
  if
  :: !blockable && enders >= 2 ->   /* refused up front */
     printf("EV T%d refused (two end-needers)\n", t); failed = true; goto unavailable
  :: else
  fi;
#endif
  /* ClassicStartWalk */
  do
  :: i < n ->
     atomic {
       start_one(snap[i], ok);
       i++;
       if :: !ok -> failed = true :: else fi
     };
     if :: failed -> break :: else fi
  :: else -> break
  od;
  if
  :: failed ->
     /* ClassicStartFailed */
     printf("EV T%d start failed: Unavailable\n", t);
#ifndef POLICY_SORTED
     do
     :: i < n -> atomic { start_one(snap[i], ok); i++ }
     :: else -> break
     od;
#endif
#ifdef POLICY_UPSTREAM
     i = 0;
     do
     :: i < n -> atomic { if :: kind[snap[i]] == KVM -> end_one(snap[i]) :: else fi; i++ }
     :: else -> break
     od;
#endif
     goto unavailable
  :: else
  fi;
  /* the caller got OK: ... change mappings ...; InvalidateRangeEnd: a new SRCU section */
  atomic {
    n = nlist; i = 0;
    do
    :: i < n -> snap[i] = list[i]; i++
    :: else -> break
    od;
    i = 0
  };
  do
  :: i < n -> atomic { if :: kind[snap[i]] == KVM -> end_one(snap[i]) :: else fi; i++ }
  :: else -> break
  od;
unavailable:
  open_windows--;   /* gate_.Exit */
done:
  atomic {
    i = 0;
    do
    :: i < NS -> assert(!pending[t * NS + i]); i++   /* a start without its end */
    :: else -> break
    od
  }
}

proctype Registrar() {
#ifndef NO_GATE
  closed = true;      /* gate_.Close(): keep new windows out ... */
  (open_windows == 0);        /* ... and wait for the open ones to end */
#endif
  atomic {
    kind[3] = KVM;
    linked[nlinked] = 3; nlinked++;
    publish();
    printf("EV R registered S3(kind 1)\n")
  };
#ifndef NO_GATE
  closed = false;     /* gate_.Open() */
#endif
}

init {
  byte s = 0;
  do
  :: s < 3 ->
     if
     :: kind[s] = KVM
     :: kind[s] = MAYFAIL
     :: kind[s] = START
     fi;
     linked[s] = s; s++
  :: else -> break
  od;
  atomic {
    nlinked = 3;
    publish();
    printf("EV kinds S0=%d S1=%d S2=%d (registered in this order; walk newest first)\n",
           kind[0], kind[1], kind[2]);
    run Walker(0); run Walker(1); run Registrar()
  }
}
