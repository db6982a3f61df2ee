package stdio

import (
	goio "io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// spliceAsync runs spliceCopy(dst, src) in the background, closing dst at
// the end as the output copy does.
func spliceAsync(dst, src *os.File) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := spliceCopy(dst, src)
		dst.Close()
		ch <- err
	}()
	return ch
}

// splice reports EAGAIN, not EOF, when the source is at EOF and the
// destination is full: the copy must still see the EOF.
func TestSpliceEOFWhileDestinationFull(t *testing.T) {
	path := mkfifo(t, t.TempDir(), "out")
	w, keep, err := openOutputFifo(path)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	client := openClient(t, path, os.O_RDONLY) // it reads only later
	r, cw, err := newPipe(true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	growPipe(r, outputPipeSize)         // as New does
	data := randomBytes(outputPipeSize) // exactly what the fifo holds
	if _, err := cw.Write(data); err != nil {
		t.Fatal(err)
	}
	cw.Close()
	select {
	case err := <-spliceAsync(w, r):
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the copy did not see EOF while the fifo was full")
	}
	got, err := goio.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "fifo", got, data)
}

// A slow reader makes the copy wait for room again and again.
func TestSpliceSlowReader(t *testing.T) {
	path := mkfifo(t, t.TempDir(), "out")
	w, keep, err := openOutputFifo(path)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	client := openClient(t, path, os.O_RDONLY)
	r, cw, err := newPipe(true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := randomBytes(1 << 20)
	wrote := writeAsync(cw, want)
	copied := spliceAsync(w, r)
	var got []byte
	buf := make([]byte, 7000)
	for {
		n, err := client.Read(buf)
		got = append(got, buf[:n]...)
		if err == goio.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(got)%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	sameBytes(t, "fifo", got, want)
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// splice cannot write to an O_APPEND file (EINVAL): copyStream falls back
// to read and write, losing nothing.
func TestCopyStreamFallsBackForAppendFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, cw, err := newPipe(true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := randomBytes(300 << 10)
	wrote := writeAsync(cw, want)
	n, err := copyStream(f, r)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("copyStream = %d, %v; want %d bytes", n, err, len(want))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "file", got, append([]byte("before\n"), want...))
}

// BenchmarkSpliceCopy moves 256 MiB from a container's pipe to a client's
// fifo, as an output copy does.
func BenchmarkSpliceCopy(b *testing.B) {
	const total = 256 << 20
	chunk := randomBytes(1 << 20)
	b.SetBytes(total)
	dir := b.TempDir()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		path := mkfifo(b, dir, "out"+string(rune('a'+i%26))+time.Now().Format("150405.000000000"))
		w, keep, err := openOutputFifo(path)
		if err != nil {
			b.Fatal(err)
		}
		client, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		r, cw, err := newPipe(true, false)
		if err != nil {
			b.Fatal(err)
		}
		growPipe(r, outputPipeSize) // as New does
		read := make(chan int64, 1)
		go func() {
			buf := make([]byte, 1<<20)
			var n int64
			for {
				m, err := client.Read(buf)
				n += int64(m)
				if err != nil {
					read <- n
					return
				}
			}
		}()
		b.StartTimer()
		go func() {
			for n := 0; n < total; n += len(chunk) {
				cw.Write(chunk)
			}
			cw.Close()
		}()
		if _, err := spliceCopy(w, r); err != nil {
			b.Fatal(err)
		}
		w.Close()
		if n := <-read; n != total {
			b.Fatalf("client read %d bytes, want %d", n, total)
		}
		b.StopTimer()
		closeAll(keep, client, r)
		os.Remove(path)
		b.StartTimer()
	}
}
