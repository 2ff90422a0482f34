// Go's select on the select_ping_pong job, as a competitor baseline
// (benchmarks/select.cc runs this program and reports its figure as
// select_ping_pong/go_select).
//
//	select_ping_pong N
//
// GOMAXPROCS(1), as our stackful tasks share one thread. A responder
// goroutine loops on a select over two unbuffered channels and a quit
// channel, and answers each value on the channel it came from; the main
// goroutine alternates between the two channels, sending the ints 0..N-1
// and checking that each answer is the value it sent. One iteration is one
// round trip through the select, as in our rows. A short warm-up runs
// first; then N round trips are timed.
//
// Prints one line, "ns_per_round_trip 123.4". Exits 1 with a message on
// stderr if an answer is wrong, 2 on a bad argument.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

const warmupRoundTrips = 100000

// pingPong makes n round trips through the responder's select and returns
// the time taken, or an error if an answer was wrong.
func pingPong(n int) (time.Duration, error) {
	a := make(chan int)
	b := make(chan int)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case v := <-a:
				a <- v
			case v := <-b:
				b <- v
			case <-quit:
				return
			}
		}
	}()
	start := time.Now()
	var err error
	for i := 0; i < n; i++ {
		ch := a
		if i%2 == 1 {
			ch = b
		}
		ch <- i
		if v := <-ch; v != i {
			err = fmt.Errorf("round trip %d came back as %d", i, v)
			break
		}
	}
	elapsed := time.Since(start)
	quit <- struct{}{}
	<-done
	return elapsed, err
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: select_ping_pong N  (N round trips, N >= 1)")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "select_ping_pong: N must be a whole number >= 1, not %q\n", os.Args[1])
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1)

	if _, err := pingPong(warmupRoundTrips); err != nil {
		fmt.Fprintln(os.Stderr, "select_ping_pong: warm-up:", err)
		os.Exit(1)
	}
	elapsed, err := pingPong(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "select_ping_pong:", err)
		os.Exit(1)
	}
	fmt.Printf("ns_per_round_trip %.4f\n", float64(elapsed.Nanoseconds())/float64(n))
}
