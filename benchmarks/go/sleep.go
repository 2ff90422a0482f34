// Go's time.Sleep on the sleep jobs, as a competitor baseline for our
// SleepFor (benchmarks/sleep.cc runs this program and reports its figures
// as sleep_lateness/go_time_sleep and sleepers_100k/go_goroutines).
//
//	sleep N
//	    One goroutine sleeps time.Sleep(time.Millisecond) N times; prints the
//	    mean lateness past each deadline on the monotonic clock:
//	    "ns_per_iteration 78123.4".
//	sleep sleepers TASKS N
//	    N times: starts TASKS goroutines that each time.Sleep(10ms), and one
//	    sync.WaitGroup waits for them all, timed from before the first is
//	    started to the last one's return; prints the mean, as above.
//
// Go's default GOMAXPROCS (every CPU). Exits 2 on a bad argument.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

func lateness(n int) float64 {
	var total time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		time.Sleep(time.Millisecond)
		total += time.Since(start) - time.Millisecond
	}
	return float64(total.Nanoseconds()) / float64(n)
}

func sleepers(tasks, n int) float64 {
	var total time.Duration
	for i := 0; i < n; i++ {
		var wg sync.WaitGroup
		start := time.Now()
		wg.Add(tasks)
		for t := 0; t < tasks; t++ {
			go func() {
				time.Sleep(10 * time.Millisecond)
				wg.Done()
			}()
		}
		wg.Wait()
		total += time.Since(start)
	}
	return float64(total.Nanoseconds()) / float64(n)
}

func positive(arg string) int {
	v, err := strconv.Atoi(arg)
	if err != nil || v < 1 {
		fmt.Fprintf(os.Stderr, "sleep: %q is not a positive count\n", arg)
		os.Exit(2)
	}
	return v
}

func main() {
	args := os.Args[1:]
	switch {
	case len(args) == 1:
		fmt.Printf("ns_per_iteration %.1f\n", lateness(positive(args[0])))
	case len(args) == 3 && args[0] == "sleepers":
		fmt.Printf("ns_per_iteration %.1f\n", sleepers(positive(args[1]), positive(args[2])))
	default:
		fmt.Fprintln(os.Stderr, "usage: sleep N | sleep sleepers TASKS N")
		os.Exit(2)
	}
}
