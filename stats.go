package ginsse

import "time"

// Stats is a snapshot of a Sender's figures since it was created.
type Stats struct {
	Streams       int   // streams open now
	Channels      int   // Redis channels subscribed now
	Published     int64 // events published by this Sender
	PublishErrors int64 // publishes that failed
	Delivered     int64 // frames written to clients
	SlowCloses    int64 // streams closed because their queue overflowed
	Reconnects    int64 // times the subscription came back after losing Redis
	Replayed      int64 // events sent from history to resuming streams
	HistoryReads  int64 // history reads sent to Redis (XRANGE, XREVRANGE)
	OutageOpens   int64 // streams that answered 200 before Redis confirmed their channels, and waited
	Shed          int64 // streams sent away with a retry hint because MaxStreams were open
	WindowBytes   int64 // bytes of frames the channels' windows hold now
	Expired       int64 // streams ended because their Identity.ExpiresAt passed
	Rotated       int64 // streams ended at Options.MaxStreamAge
	Revoked       int64 // streams ended by Disconnect
	Refreshes     int64 // identities Options.Refresh extended
	// PresenceEntries counts the users on channels this Sender reports
	// to presence (a user on two channels counts twice).
	PresenceEntries int64
	PresenceWrites  int64 // Redis commands written for presence
	// LagP50 and LagP99 are quantiles of DeliveryLag: the bucket bounds
	// that hold them.
	LagP50, LagP99 time.Duration
	// DeliveryLag is the time from publish to the write to the client of
	// the live events delivered; see LagHistogram for the clocks' caveat.
	DeliveryLag LagHistogram
}

// Stats returns the Sender's current figures. It is cheap and safe to call
// at any time.
func (s *Sender) Stats() Stats {
	streams, channels := s.hub.counts()
	st := Stats{
		Streams:       streams,
		Channels:      channels,
		Published:     s.published.Load(),
		PublishErrors: s.publishErrors.Load(),
		Delivered:     s.delivered.Load(),
		SlowCloses:    s.hub.slow.Load(),
		Reconnects:    s.reconnects.Load(),
		Replayed:      s.replayed.Load(),
		HistoryReads:  s.historyReads.Load(),
		OutageOpens:   s.outageOpens.Load(),
		Shed:          s.shed.Load(),
		WindowBytes:   s.hub.budget.held.Load(),
		Expired:       s.expired.Load(),
		Rotated:       s.rotated.Load(),
		Revoked:       s.revoked.Load(),
		Refreshes:     s.refreshes.Load(),
	}
	st.DeliveryLag = s.lag.snapshot()
	st.LagP50, st.LagP99 = st.DeliveryLag.Quantile(0.5), st.DeliveryLag.Quantile(0.99)
	if s.pres != nil {
		st.PresenceEntries, st.PresenceWrites = s.pres.entries.Load(), s.pres.writes.Load()
	}
	return st
}
