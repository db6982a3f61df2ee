package wire

import "context"

// Method serves fn as a ttrpc method (a ttrpc.Method), its request and
// response coded by wire.
func Method[Req any, Resp any](fn func(context.Context, *Req) (Resp, error)) func(context.Context, func(any) error) (any, error) {
	return func(ctx context.Context, unmarshal func(any) error) (any, error) {
		req := new(Req)
		if err := unmarshal(Message(req)); err != nil {
			return nil, err
		}
		resp, err := fn(ctx, req)
		if err != nil {
			return nil, err
		}
		return Message(resp), nil
	}
}
