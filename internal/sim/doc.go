// Package sim is a deterministic simulation of bearer's refresh protocol
// (docs/refresh.md). It holds no code outside its tests: the simulator is
// sim_test.go and the files beside it.
//
// Each schedule is drawn from a seed: one to four processes, each with a
// real [bearer.Source] and [bearer.Transport], share one real store
// ([bearer.MemoryStore], [bearer.FileStore] in a temporary folder, or a model
// of redisstore's lease), talk to a model of a strict token server through an
// in-memory http.RoundTripper, and meet the faults the seed chose: crashes at
// every step, lost answers, 5xx and 429, failing and slow stores, clock
// jumps, access tokens revoked early, Close at any moment. Everything runs
// under testing/synctest, so time is fake and a seed replays the same
// schedule. After each schedule the invariants of the protocol are checked
// (check_test.go says which and why).
//
//	go test -race ./internal/sim/                        # the corpus, then 10,000 schedules
//	go test ./internal/sim/ -run 'TestSim$' -sim.seed=N  # replay one, printing its trace
//	go test ./internal/sim/ -run 'TestSim$' -sim.n=1000000 -sim.random -timeout=0
//
// -sim.long-redis-outage draws Redis outages past the lease's contract (a
// holder that cannot reach Redis for about two thirds of LeaseTTL is
// presumed dead), so it finds re-sends by design. TestSimMutants plants a
// defect in the simulated world for each invariant and shows it is caught;
// TestSimDeterministic runs schedules twice and compares what happened.
package sim
