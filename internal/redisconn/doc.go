// Package redisconn builds the one Redis client every llmgate store shares:
// a plain redis:// or rediss:// URL, a Sentinel group, or a Cluster, behind
// go-redis's UniversalClient, with timeouts and pool sizes chosen for a
// gateway that must answer quickly or fail fast.
package redisconn
