package payments

import "context"

// WithWriteHook makes the Service run hook before every attempt to write a
// gateway's answer; an error from hook fails the attempt as an unreachable
// database would. For tests only.
func WithWriteHook(hook func(ctx context.Context) error) Option {
	return func(s *Service) { s.beforeWrite = hook }
}
