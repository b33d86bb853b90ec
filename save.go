package bearer

import (
	"context"
	"errors"
	"time"
)

// persist saves head over anchor, under the store's lock if it has one.
// It runs under the refresh lock. A failure leaves head unsaved (and the
// store's lock held, so that no other process acts on the store meanwhile),
// is reported, and is retried in the background.
func (s *Source) persist(ctx context.Context) {
	if _, ok := s.store.(Locker); ok && s.held == nil {
		// The lock was lost or never taken: sync takes it, re-reads the
		// store and calls persist again if head is still unsaved.
		if err := s.sync(ctx); err != nil {
			s.saveFailed(ctx, err)
		}
		return
	}
	var err error
	if s.held != nil {
		err = s.held.CompareAndSwap(ctx, s.anchor, s.head)
	} else {
		err = s.store.Save(ctx, s.head)
	}
	if err == nil {
		s.unsaved, s.anchor, s.saveErr = false, nil, nil
		return
	}
	if errors.Is(err, ErrLockLost) {
		s.dropLease(ctx)
	}
	// ErrConflict (the store changed although its lock was held) is
	// retried like any failure: the retry re-reads the store first.
	s.saveFailed(ctx, err)
}

// saveFailed reports a failed save and makes sure it is retried until it
// lands, another process's token supersedes it, or the Source is closed.
func (s *Source) saveFailed(ctx context.Context, err error) {
	s.saveErr = err
	s.saveFailures.Add(1)
	s.logWarn("saving the new token failed; it is used in memory and saving is retried", err)
	if h := s.cfg.Hooks.SaveFailed; h != nil {
		h(ctx, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retrying || s.closed {
		return
	}
	s.retrying = true
	s.wg.Add(1)
	go s.retrySaves()
}

// maxSaveWait is the longest pause between retries of a failed save.
const maxSaveWait = 5 * time.Second

// retrySaves is the one goroutine that retries a failed save, with
// backoff, until head is saved or the Source is closed (Close then tries
// once more itself).
func (s *Source) retrySaves() {
	defer s.wg.Done()
	wait := 100 * time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			s.mu.Lock()
			s.retrying = false
			s.mu.Unlock()
			return
		case <-t.C:
		}
		if s.retrySave() {
			return
		}
		wait = min(wait*2, maxSaveWait)
		t.Reset(wait)
	}
}

// retrySave makes one attempt and reports whether head is saved; then it
// has also ended the retrying, under the refresh lock, so that a save
// failing right after starts a new retry goroutine.
func (s *Source) retrySave() bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.refreshTimeout())
	defer cancel()
	if !s.acquire(ctx) {
		return false
	}
	defer s.releaseSem()
	if s.unsaved {
		if err := s.sync(ctx); err != nil {
			s.saveFailed(ctx, err)
		}
		s.unlockStore(ctx)
		if s.unsaved {
			return false
		}
	}
	s.mu.Lock()
	s.retrying = false
	s.mu.Unlock()
	return true
}

// unlockStore releases the store's lock unless head is unsaved.
func (s *Source) unlockStore(ctx context.Context) {
	if !s.unsaved {
		s.dropLease(ctx)
	}
}

// dropLease releases the store's lock, if held.
func (s *Source) dropLease(ctx context.Context) {
	if s.held == nil {
		return
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.held.Unlock(uctx); err != nil {
		s.logWarn("unlocking the store failed", err)
	}
	s.held = nil
}
