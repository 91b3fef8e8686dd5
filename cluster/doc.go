// Package cluster is what lets several wsbridge nodes cooperate through
// Redis (a single Redis or a Redis Cluster; issue 9): the Broker that
// carries messages between nodes, the node registry that gives each node
// its id and tells the survivors when a node is lost, the fd sequence
// reserved in Redis, and the wire format of the messages nodes send each
// other.
//
// # Keys and channels
//
// Every name starts with the prefix (WSBRIDGE_REDIS_PREFIX, default
// "wsbridge"; p below). The registry's keys share one hash slot, through
// the hash tag {p}, so that its Lua scripts can touch them together on a
// Redis Cluster; the channels carry no common hash tag, so that sharded
// pub/sub spreads them over the cluster's masters.
//
//	{p}:node:<id>            string, PX TTL: the live claim of node id <id> (its record, JSON)
//	{p}:nodes                hash <id> → record: every claimed id, live or not yet found lost
//	{p}:lost                 hash <id>:<gen> → record: lost nodes whose cleanup is pending
//	{p}:lostlock:<id>:<gen>  string, PX lease: the survivor cleaning up after that node
//	{p}:dead:<id>:<gen>      string, PX 24 h: that generation was cleaned up after (it may not come back)
//	{p}:gen                  counter: one generation per claim
//	{p}:seq:<id>             counter: the last fd sequence number reserved for node id <id>
//
//	p:node:<id>              channel (SSUBSCRIBE): requests and replies to node <id>
//	p:group:<name>           channel: a group's deliveries, subscribed by the nodes with members
//	p:user:<id>              channel: a user's deliveries, subscribed by the nodes with its fds
//	p:all                    channel: broadcasts, subscribed by every node
//
// docs/SCALING.md lists the same layout with the Redis operations each
// operation costs.
package cluster
