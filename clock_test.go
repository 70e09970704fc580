package taskpool_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// Every says its expression, which a broker's client hands to its server.
func TestEveryString(t *testing.T) {
	t.Parallel()
	s, ok := taskpool.Every(90 * time.Second).(fmt.Stringer)
	require.True(t, ok)
	assert.Equal(t, "@every 1m30s", s.String())
}
