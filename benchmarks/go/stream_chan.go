// Go's buffered channel on the stream_8B job, as a competitor baseline for
// our channels (benchmarks/go_chan.cc runs this program and reports
// its figure as stream_8B/go_buffered_chan).
//
//	stream_chan N
//
// One goroutine sends the ints 0..N-1 (8 bytes each on amd64) into a
// make(chan int, 1024); the main goroutine receives them and checks that
// each equals its sequence number, as our Stream job does. GOMAXPROCS(2),
// so sender and receiver can run on different OS threads, as ours do. A
// short warm-up stream runs first; then one stream of N messages is timed
// from the moment the sender has been started (ours likewise starts its
// producer thread before the clock) to the last message received.
//
// Prints one line, "ns_per_message 57.31". Exits 1 with a message on stderr
// if a sequence check fails, 2 on a bad argument.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

const (
	capacity       = 1024
	warmupMessages = 100000
)

// stream sends n ints through a new buffered channel and checks them on
// arrival; it returns the time from the sender's start to the last receive.
func stream(n int) (time.Duration, error) {
	ch := make(chan int, capacity)
	go func() {
		for i := 0; i < n; i++ {
			ch <- i
		}
		close(ch)
	}()
	start := time.Now()
	expected := 0
	for v := range ch {
		if v != expected {
			return 0, fmt.Errorf("message %d carried %d", expected, v)
		}
		expected++
	}
	elapsed := time.Since(start)
	if expected != n {
		return 0, fmt.Errorf("received %d of %d messages", expected, n)
	}
	return elapsed, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: stream_chan N  (N messages, N >= 1)")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "stream_chan: N must be a whole number >= 1, not %q\n", os.Args[1])
		os.Exit(2)
	}
	runtime.GOMAXPROCS(2)

	if _, err := stream(warmupMessages); err != nil {
		fmt.Fprintln(os.Stderr, "stream_chan: warm-up:", err)
		os.Exit(1)
	}
	elapsed, err := stream(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stream_chan:", err)
		os.Exit(1)
	}
	fmt.Printf("ns_per_message %.4f\n", float64(elapsed.Nanoseconds())/float64(n))
}
