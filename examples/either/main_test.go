package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The same program prints the same lines on both transports.
func TestBothTransportsAgree(t *testing.T) {
	const want = "square(3) = 9\nsquare(7) = 49\nhello, Ada\ngreet without a name: skip retry: true (greet: no name)\n"
	for _, transport := range []string{"inprocess", "nats"} {
		t.Run(transport, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out bytes.Buffer
			require.NoError(t, run(ctx, transport, "", &out))
			assert.Equal(t, want, out.String())
		})
	}
	assert.Error(t, run(context.Background(), "carrier-pigeon", "", &bytes.Buffer{}))
}
