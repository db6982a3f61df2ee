// Package stdio is one process's stdio as the shim sees it: the fifos, files
// and logger children containerd asked for, the pipes or pty the container
// gets, and the copy loops between them.
//
// Without a terminal every requested stream gets a pipe. The container gets
// one end (RuntimeStdio); the shim keeps the other and copies between it and
// the client's fifo or file with splice(2), through Go's runtime poller, so a
// copy costs one goroutine and no user-space buffer. A binary:// logger reads
// the pipes itself and needs no copy at all.
//
// With a terminal the runtime sends the pty master over a ConsoleSocket and
// SetConsole copies between it and the fifos.
//
// Fifos are opened with plain open(2) and O_NONBLOCK, never blocking and with
// no helper goroutine: for an output fifo the shim first opens its own read
// handle (which never blocks) and then the write handle (which succeeds at
// once because a reader now exists); for stdin it first opens the read handle
// and then its own write handle the same way. Those extra handles are exactly
// the ones the contract asks the shim to keep (a reader so the container never
// sees EPIPE, a writer so a client disconnect is not EOF), so the order costs
// nothing, and it avoids both the Linux-only O_RDWR-on-a-fifo behaviour and
// github.com/containerd/fifo's background open goroutines.
package stdio
