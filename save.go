package bearer

import (
	"context"
	"errors"
	"time"
)

// saveDone is what a retried save yields inside the singleflight, where
// refreshes yield a *Token.
type saveDone struct{}

// savePendingOnce runs savePending inside the singleflight, so that it
// never overlaps a refresh, and returns its error.
func (s *Source) savePendingOnce() error {
	var err error
	s.group.Do("refresh", func() (any, error) {
		err = s.savePending(context.Background())
		return saveDone{}, nil
	})
	return err
}

// save writes new in place of old, under the store's lock if it has one.
func (s *Source) save(ctx context.Context, old, new *Token) error {
	l, ok := s.store.(Locker)
	if !ok {
		return s.store.Save(ctx, new)
	}
	lease, err := l.Lock(ctx)
	if err != nil {
		return err
	}
	defer lease.Unlock(context.WithoutCancel(ctx))
	return lease.CompareAndSwap(ctx, old, new)
}

// saveFailed reports a failed save and makes sure it is retried until it
// succeeds, the token is superseded, or the Source is closed. old is what
// the store held when the save failed. It runs inside the singleflight.
func (s *Source) saveFailed(ctx context.Context, old, new *Token, err error) {
	s.saveFailures.Add(1)
	s.logWarn("saving the new token failed; it is used in memory and saving is retried", err)
	if h := s.cfg.Hooks.SaveFailed; h != nil {
		h(ctx, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = &pendingSave{old: old, new: new}
	if s.saving || s.closed {
		return
	}
	s.saving = true
	s.wg.Add(1)
	go s.retrySaves()
}

// savePending saves the pending token. Callers run it inside the
// singleflight, so that no refresh, and no other save of this Source,
// runs meanwhile: a slow retry can never land over a newer token.
func (s *Source) savePending(ctx context.Context) error {
	s.mu.Lock()
	p := s.pending
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.refreshTimeout())
	defer cancel()
	err := s.save(ctx, p.old, p.new)
	if err != nil && !errors.Is(err, ErrConflict) {
		s.saveFailures.Add(1)
		s.logWarn("saving the new token failed again", err)
		return err
	}
	if err != nil {
		// Another process saved a token since: the store is the
		// fleet's truth, and the next refresh adopts it.
		s.logWarn("the store holds another token; the unsaved one is dropped", err)
	}
	s.mu.Lock()
	if s.pending == p {
		s.pending = nil
	}
	s.mu.Unlock()
	return nil
}

// maxSaveWait is the longest pause between retries of a failed save. It is
// short, as other Sources sharing the store wait for the save (awaitSave)
// rather than spend the refresh token again.
const maxSaveWait = 5 * time.Second

// retrySaves is the one goroutine that retries a failed save, with
// backoff. It ends when nothing is pending any more (saved, or superseded
// by a refresh that saved) or when Close is called.
func (s *Source) retrySaves() {
	defer s.wg.Done()
	wait := 100 * time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			s.mu.Lock()
			s.saving = false
			s.mu.Unlock()
			return
		case <-t.C:
		}
		s.savePendingOnce()
		s.mu.Lock()
		if s.pending == nil {
			// Under mu, so that a save failing now starts a new goroutine.
			s.saving = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		wait = min(wait*2, maxSaveWait)
		t.Reset(wait)
	}
}
