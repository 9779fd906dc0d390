package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartEmbedded starts a NATS server with JetStream inside the process, on
// a free loopback port, storing under dir: for `tenantd dev` (EVENT_RELAY=nats
// without NATS_URL) and the tests. It returns the client URL and stop, which
// shuts the server down and waits for it.
func StartEmbedded(ctx context.Context, dir string) (url string, stop func(), err error) {
	return startEmbedded(ctx, dir, server.RANDOM_PORT)
}

// startEmbedded is StartEmbedded on a given port (tests restart a server on
// the port it had).
func startEmbedded(ctx context.Context, dir string, port int) (string, func(), error) {
	if dir == "" {
		return "", nil, errors.New("relay: embedded NATS needs a storage directory")
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "tenantd-dev",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return "", nil, fmt.Errorf("relay: embedded NATS: %w", err)
	}
	go s.Start()
	deadline := time.Now().Add(10 * time.Second)
	for !s.ReadyForConnections(100 * time.Millisecond) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			s.Shutdown()
			s.WaitForShutdown()
			if ctx.Err() != nil {
				return "", nil, ctx.Err()
			}
			return "", nil, errors.New("relay: embedded NATS did not start within 10s")
		}
	}
	stop := func() {
		s.Shutdown()
		s.WaitForShutdown()
	}
	return s.ClientURL(), stop, nil
}
