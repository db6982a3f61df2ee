package cgroup

import (
	"fmt"
	"io/fs"

	"google.golang.org/protobuf/encoding/protowire"
)

// Type URLs of the metrics AppendMetrics writes, as containerd names them
// in a task's Stats and a sandbox's SandboxMetrics.
const (
	MetricsV1TypeURL = "io.containerd.cgroups.v1.Metrics"
	MetricsV2TypeURL = "io.containerd.cgroups.v2.Metrics"
)

// AppendMetrics reads the cgroup's statistics and appends them to dst in
// protobuf's wire format: an io.containerd.cgroups.v1.Metrics or
// io.containerd.cgroups.v2.Metrics, whose type URL it returns. What the
// kernel does not offer (a controller not mounted or not enabled, a file it
// does not have) is left out. It fails, with fs.ErrNotExist, once the
// cgroup is removed.
//
// A shim under containerd 2.4's CRI is asked for the metrics of each of its
// containers and of its pod every second: this reads each file into a
// buffer it keeps and writes the message field by field, so that a call
// allocates nothing but what dst grows by.
func (c *Cgroup) AppendMetrics(dst []byte) ([]byte, string, error) {
	s := getScratch()
	defer putScratch(s)
	w := pbWriter{b: dst}
	if c.version == 2 {
		if !s.exists(c.unified) {
			return dst, "", fmt.Errorf("cgroup %s: %w", c.unified, fs.ErrNotExist)
		}
		if err := c.metricsV2(&w, s); err != nil {
			return dst, "", err
		}
		return w.b, MetricsV2TypeURL, nil
	}
	found := false
	for _, dir := range c.dirs {
		found = found || s.exists(dir)
	}
	if !found {
		return dst, "", fmt.Errorf("cgroup of pid %d: %w", c.pid, fs.ErrNotExist)
	}
	if err := c.metricsV1(&w, s); err != nil {
		return dst, "", err
	}
	return w.b, MetricsV1TypeURL, nil
}

// keyed writes the message field num from the flat keyed file data: each
// key that names one of fields, with its value. rename, if not nil, turns
// a file's key into its field's name first.
func (w *pbWriter) keyed(num protowire.Number, data []byte, fields keyedFields, rename func([]byte) []byte) {
	start := w.begin()
	eachKV(data, func(key []byte, v uint64) {
		if rename != nil {
			key = rename(key)
		}
		if n := fields.number(key); n != 0 {
			w.uint64(n, v)
		}
	})
	w.end(num, start)
}

// readUint reads a file holding one number ("max": ifMax), dir/name as
// read takes them. missing is true,
// with no error, when the file is not there.
func (s *scratch) readUint(ifMax uint64, dir string, name ...string) (v uint64, missing bool, err error) {
	data, err := s.read(dir, name...)
	if cgroupFileMissing(err) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, err
	}
	v, err = uintValue(s.pathString, data, ifMax)
	return v, false, err
}
