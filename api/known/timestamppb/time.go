package timestamppb

import "time"

// New is t as a Timestamp.
func New(t time.Time) *Timestamp {
	return &Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())}
}

// Now is the current time as a Timestamp.
func Now() *Timestamp { return New(time.Now()) }

// AsTime is x as a time.Time in UTC (the Unix epoch for nil), as
// protobuf-go's does.
func (x *Timestamp) AsTime() time.Time {
	return time.Unix(x.GetSeconds(), int64(x.GetNanos())).UTC()
}
