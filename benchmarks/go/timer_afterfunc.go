// Go's timers on the timer_arm_cancel_1m job, as a competitor baseline for
// the event loops' timers (benchmarks/timers.cc runs this program and
// reports its figure as timer_arm_cancel_1m/go_afterfunc).
//
//	timer_afterfunc N
//
// Arms N timers with time.AfterFunc(time.Hour, f), then stops each with
// Stop(), which must report that it stopped the timer (none may have
// fired); the time from the first arm to the last stop, divided by N, is
// the figure. Go's default GOMAXPROCS (one P per CPU), as Go programs run.
// One untimed round of the same size runs first, as the C++ side warms its
// loop up, so both measure with their memory already grown.
//
// Prints one line, "ns_per_pair 123.45". Exits 1 with a message on stderr
// if a timer fired or could not be stopped, 2 on a bad argument.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// round arms n timers an hour ahead, then stops them all; it returns the
// time taken.
func round(n int) (time.Duration, error) {
	timers := make([]*time.Timer, n)
	var fired atomic.Bool
	f := func() { fired.Store(true) }
	start := time.Now()
	for i := range timers {
		timers[i] = time.AfterFunc(time.Hour, f)
	}
	for i, t := range timers {
		if !t.Stop() {
			return 0, fmt.Errorf("timer %d had fired or was stopped already", i)
		}
	}
	elapsed := time.Since(start)
	if fired.Load() {
		return 0, fmt.Errorf("a timer an hour ahead fired")
	}
	return elapsed, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: timer_afterfunc N  (N timers, N >= 1)")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "timer_afterfunc: N must be a whole number >= 1, not %q\n", os.Args[1])
		os.Exit(2)
	}
	if _, err := round(n); err != nil {
		fmt.Fprintln(os.Stderr, "timer_afterfunc: warm-up:", err)
		os.Exit(1)
	}
	elapsed, err := round(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "timer_afterfunc:", err)
		os.Exit(1)
	}
	fmt.Printf("ns_per_pair %.4f\n", float64(elapsed.Nanoseconds())/float64(n))
}
