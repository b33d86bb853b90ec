package redisstore

import (
	"testing"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/internal/storetest"
)

func TestStoreKeepsTheContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) bearer.Store { return newStore(t) })
}
