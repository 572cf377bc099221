package main

import "log/slog"

// ownDescriptors is about how many descriptors alegate holds besides its
// bridged WebSockets when they are all it serves: the listeners (kitchen
// clients, metrics), its connections to alecryptd, epoll and stdio. HTTP
// requests hold more (two each in flight, and pools of idle connections to
// the kitchen and alecryptd: docs/gateway.md, "Many connections").
const ownDescriptors = 16

// maxBridged is how many WebSockets alegate can bridge under a limit of
// open descriptors: each holds two, the client's connection and the
// kitchen's.
func maxBridged(limit uint64) uint64 {
	if limit <= ownDescriptors {
		return 0
	}
	return (limit - ownDescriptors) / 2
}

// logOpenFiles says at start what the descriptor limit allows, so an
// operator sees the ceiling before clients reach it: past it alegate can
// neither accept a client (the server retries, logging "too many open
// files") nor dial the kitchen.
func logOpenFiles(log *slog.Logger, limit uint64) {
	log.Info("open files limit", "limit", limit, "max_bridged_websockets", maxBridged(limit))
}
