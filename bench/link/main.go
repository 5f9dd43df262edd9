// Command link is the benchmark's stand-in for the network between a pod and
// S3: a TCP proxy that adds a one-way delay to every byte in both directions,
// caps each connection's throughput, and caps the total over all connections.
//
// Why a proxy and not tc: the kernel this benchmark runs on has no netem, tbf
// or fq qdiscs (tc answers "Specified qdisc kind is unknown"), so neither
// delay nor a per-flow rate can be set in the kernel. A proxy also states the
// model plainly: one stream is held to -conn-rate however fast the machine
// is, many streams share -total-rate, and each request costs a round trip.
//
//	link -listen 127.0.0.1:0 -upstream 127.0.0.1:9000 -delay 10ms -conn-rate 85e6 -total-rate 1.25e9
//
// Prints "listening <addr>" on stdout once it accepts connections.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

const chunk = 64 << 10

// pacer hands out send times so that bytes leave no faster than rate.
type pacer struct {
	mu   sync.Mutex
	rate float64 // bytes per second; 0 = unlimited
	next time.Time
}

// reserve returns when n bytes may be sent.
func (p *pacer) reserve(now time.Time, n int) time.Time {
	if p == nil || p.rate <= 0 {
		return now
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	return at
}

type packet struct {
	data []byte
	sent time.Time
}

var pool = sync.Pool{New: func() any { b := make([]byte, chunk); return &b }}

// pipe moves src to dst as the link would: every chunk arrives delay after it
// was read, no sooner than the connection's and the link's pacers allow.
// At most queue chunks are in flight; beyond that src is not read (the
// receiver's window closes, as TCP's would).
func pipe(src, dst net.Conn, delay time.Duration, conn, total *pacer, queue int, done func()) {
	defer done()
	ch := make(chan packet, queue)
	go func() {
		defer close(ch)
		for {
			bp := pool.Get().(*[]byte)
			n, err := src.Read(*bp)
			if n > 0 {
				ch <- packet{(*bp)[:n], time.Now()}
			} else {
				pool.Put(bp)
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for p := range ch {
		if !failed {
			arrive := p.sent.Add(delay)
			at := conn.reserve(arrive, len(p.data))
			if t := total.reserve(arrive, len(p.data)); t.After(at) {
				at = t
			}
			time.Sleep(time.Until(at))
			if _, err := dst.Write(p.data); err != nil {
				failed = true
				src.Close() // the other side stops reading; the reader ends
			}
		}
		b := p.data[:chunk]
		pool.Put(&b)
	}
	if tc, ok := dst.(*net.TCPConn); ok && !failed {
		_ = tc.CloseWrite()
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept on")
	upstream := flag.String("upstream", "", "host:port to forward to")
	delay := flag.Duration("delay", 10*time.Millisecond, "one-way delay (the round trip is twice this)")
	connRate := flag.Float64("conn-rate", 85e6, "bytes/s per connection and direction (0: unlimited)")
	totalRate := flag.Float64("total-rate", 1.25e9, "bytes/s over all connections, per direction (0: unlimited)")
	flag.Parse()
	if *upstream == "" {
		flag.Usage()
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	up, down := &pacer{rate: *totalRate}, &pacer{rate: *totalRate}
	// Enough queued chunks to keep a full-rate connection busy for a round trip.
	queue := max(16, int(*connRate*delay.Seconds()*2/chunk)+4)
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() {
			u, err := net.Dial("tcp", *upstream)
			if err != nil {
				c.Close()
				return
			}
			// The TCP handshake over the link costs one round trip before any data.
			time.Sleep(2 * *delay)
			var wg sync.WaitGroup
			wg.Add(2)
			go pipe(c, u, *delay, &pacer{rate: *connRate}, up, queue, wg.Done)
			go pipe(u, c, *delay, &pacer{rate: *connRate}, down, queue, wg.Done)
			wg.Wait()
			c.Close()
			u.Close()
		}()
	}
}

