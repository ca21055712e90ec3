package ginsse

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Join and leave events are decided in Redis, by the script that writes a
// Sender's roster of a channel, so that every Sender agrees and each is
// sent once. The script keeps, per channel, the users announced present
// ({<channel>}:presence:users): a user in a living Sender's roster and
// not announced gets ginsse-join; an announced user in no living roster
// is marked gone at that time, and gets ginsse-leave once gone for
// Options.PresenceGrace, unless back before. A reconnect, a rotation or
// a restart that brings the user back within the grace sends neither.
//
// The events are published by the same script, written to the channel's
// history first when History is on, so they are history events: a resume
// replays them. A channel with a leave pending is put in the sorted set
// {<prefix>ginsse/presence-due} with the time it is due; every Sender
// looks there each second and runs the script for the channels due, so a
// leave is sent even when the Sender that saw the user go is gone too.
const (
	joinEvent  = "ginsse-join"
	leaveEvent = "ginsse-leave"
)

func presenceUsersKey(redisChannel string) string { return "{" + redisChannel + "}:presence:users" }

func presenceDue(prefix string) string { return "{" + prefix + "ginsse/presence-due}" }

// rosterScript writes a Sender's roster of one channel and, with join and
// leave on, announces the changes. It returns when the channel's next
// leave is due (ms), or 0.
//
// KEYS: the presence hash, the announced users, the history.
// ARGV: 1 Sender id, 2 its roster ("": none), 3 now (ms), 4 grace (ms),
// 5 the living Senders' ids, comma-separated, 6 keep (ms), 7 join and
// leave ("1" on), 8 history length (0: off), 9 history age (ms),
// 10 PUBLISH or SPUBLISH, 11 the Redis channel.
var rosterScript = redis.NewScript(rosterSource)

const rosterSource = `
local id, roster, now, grace = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if roster == '' then
  redis.call('HDEL', KEYS[1], id)
else
  redis.call('HSET', KEYS[1], id, roster)
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
if ARGV[7] ~= '1' then return 0 end
local live = {[id] = true}
for l in string.gmatch(ARGV[5], '[^,]+') do live[l] = true end
local present = {}
local rosters = redis.call('HGETALL', KEYS[1])
for i = 1, #rosters, 2 do
  if live[rosters[i]] then
    local ok, r = pcall(cjson.decode, rosters[i + 1])
    if ok and type(r) == 'table' and type(r.u) == 'table' then
      for u in pairs(r.u) do present[u] = true end
    end
  end
end
local events, due = {}, 0
local announced = redis.call('HGETALL', KEYS[2])
local known = {}
for i = 1, #announced, 2 do
  local u, v = announced[i], announced[i + 1]
  known[u] = true
  if present[u] then
    if v ~= 'here' then redis.call('HSET', KEYS[2], u, 'here') end
  else
    local gone = now
    if v == 'here' then redis.call('HSET', KEYS[2], u, now) else gone = tonumber(v) or now end
    if now - gone >= grace then
      redis.call('HDEL', KEYS[2], u)
      table.insert(events, {'` + leaveEvent + `', u})
    elseif due == 0 or gone + grace < due then
      due = gone + grace
    end
  end
end
for u in pairs(present) do
  if not known[u] then
    redis.call('HSET', KEYS[2], u, 'here')
    table.insert(events, {'` + joinEvent + `', u})
  end
end
if #announced > 0 or #events > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
local maxlen, age = tonumber(ARGV[8]), tonumber(ARGV[9])
for _, e in ipairs(events) do
  local p = '{"data":' .. cjson.encode({user = e[2]}) .. ',"type":"' .. e[1] .. '"}'
  if maxlen > 0 then
    if age > 0 then
      local t = redis.call('TIME')
      local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      redis.call('XTRIM', KEYS[3], 'MINID', ms - age)
      redis.call('PEXPIRE', KEYS[3], age)
    end
    local xid = redis.call('XADD', KEYS[3], 'MAXLEN', maxlen, '*', 'p', p)
    p = string.sub(p, 1, -2) .. ',"id":"' .. xid .. '"}'
  end
  redis.call(ARGV[10], ARGV[11], p)
end
return due
`

// rosterCmd is the script run that writes roster (nil: none) for the
// Redis channel name.
func (p *presence) rosterCmd(ctx context.Context, name string, roster []byte, live []string, eval bool) *redis.Cmd {
	o := p.s.opts
	join := "0"
	if o.JoinLeave {
		join = "1"
	}
	pub := "PUBLISH"
	if o.Sharded {
		pub = "SPUBLISH"
	}
	verb, body := "evalsha", rosterScript.Hash()
	if eval {
		verb, body = "eval", rosterSource
	}
	args := []any{verb, body, 3, presenceKey(name), presenceUsersKey(name), historyKey(name),
		p.id, roster, time.Now().UnixMilli(), o.PresenceGrace.Milliseconds(), strings.Join(live, ","),
		presenceKeep.Milliseconds(), join, o.History, o.HistoryAge.Milliseconds(), pub, name}
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(3)
	return cmd
}

// scheduleLeaves records when the channels' next leaves are due, for
// whichever Sender looks first.
func (p *presence) scheduleLeaves(ctx context.Context, due map[string]int64) error {
	if len(due) == 0 {
		return nil
	}
	zs := make([]redis.Z, 0, len(due))
	for name, at := range due {
		zs = append(zs, redis.Z{Score: float64(at), Member: name})
	}
	p.writes.Add(1)
	return p.s.client.ZAdd(ctx, presenceDue(p.s.opts.Prefix), zs...).Err()
}

// dueLeaves takes the channels whose leaves are due now: each is taken by
// one Sender only (ZREM answers 1 to one of them).
func (p *presence) dueLeaves(ctx context.Context) []string {
	key := presenceDue(p.s.opts.Prefix)
	names, err := p.s.client.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(time.Now().UnixMilli(), 10), Count: 1000}).Result()
	p.writes.Add(1)
	if err != nil || len(names) == 0 {
		return nil
	}
	pipe := p.s.client.Pipeline()
	taken := make([]*redis.IntCmd, len(names))
	for i, name := range names {
		taken[i] = pipe.ZRem(ctx, key, name)
	}
	_, _ = pipe.Exec(ctx)
	p.writes.Add(int64(len(names)))
	var mine []string
	for i, c := range taken {
		if c.Val() == 1 {
			mine = append(mine, names[i])
		}
	}
	return mine
}
