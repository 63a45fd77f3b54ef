// Package e2e runs llmgate as it runs in production and breaks things around
// it: several `llmgate serve` replicas built from this tree, sharing one real
// redis-server (append-only file on, so it can be killed and restarted), the
// dev OpenID Provider and an upstream, all real processes or servers on
// loopback. Its tests prove what an operator relies on: revocations reach
// every replica within a second, a Redis outage gives 503s and recovers by
// itself, slow Redis does not slow calls with known tokens, SIGTERM drains
// open streams, and upstream faults become clear answers instead of hangs.
//
// The package holds only tests. They need the redis-server binary: without
// it they are skipped, and they fail under LLMGATE_TEST_REQUIRE_REDIS=1 (CI).
// The soak test runs only with LLMGATE_E2E_SOAK set to a duration
// (for example LLMGATE_E2E_SOAK=10m go test -run Soak -v -timeout 30m ./e2e/).
package e2e
