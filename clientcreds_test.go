package bearer

import (
	"context"
)

type emptyStore struct{}

func (emptyStore) Load(context.Context) (*Token, error) { return nil, ErrNoToken }
func (emptyStore) Save(context.Context, *Token) error   { return nil }
