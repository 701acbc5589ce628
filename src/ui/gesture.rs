//! Turns raw presses, moves and releases into what a finger meant: a tap, a
//! long press, a drag (gallery scroll), or a held key that repeats. Pure and
//! clocked by the caller, so tests script time exactly.

use std::time::{Duration, Instant};

/// Movement beyond this many pixels makes a press a drag, not a tap.
pub const SLOP_PX: f32 = 12.0;
/// Holding this long without moving is a long press.
pub const LONG_PRESS: Duration = Duration::from_millis(600);
/// A held repeating key first repeats after this long...
pub const REPEAT_DELAY: Duration = Duration::from_millis(450);
/// ...then every this long.
pub const REPEAT_EVERY: Duration = Duration::from_millis(75);

/// What a finger did, as the app consumes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gesture {
    /// Lifted near where it went down, before the long-press time.
    Tap {
        /// Where it went down.
        x: f32,
        /// Where it went down.
        y: f32,
    },
    /// Held still for [`LONG_PRESS`] (fires while still down).
    LongPress {
        /// Where.
        x: f32,
        /// Where.
        y: f32,
    },
    /// Moved by `dy` since the last drag report.
    Drag {
        /// Vertical movement in pixels (down is positive).
        dy: f32,
    },
    /// A held key should repeat once more.
    Repeat,
}

#[derive(Debug, Clone, Copy)]
struct Contact {
    start: (f32, f32),
    last: (f32, f32),
    since: Instant,
    dragging: bool,
    long_fired: bool,
    repeats: bool,
    next_repeat: Instant,
}

/// Tracks one finger (the UI is single-touch; extra fingers are ignored).
#[derive(Debug, Default)]
pub struct Tracker {
    contact: Option<Contact>,
}

impl Tracker {
    /// A finger went down; `repeats` when it is on a key that auto-repeats.
    pub fn down(&mut self, x: f32, y: f32, now: Instant, repeats: bool) {
        self.contact = Some(Contact {
            start: (x, y),
            last: (x, y),
            since: now,
            dragging: false,
            long_fired: false,
            repeats,
            next_repeat: now + REPEAT_DELAY,
        });
    }

    /// The finger moved.
    pub fn moved(&mut self, x: f32, y: f32) -> Option<Gesture> {
        let c = self.contact.as_mut()?;
        if !c.dragging {
            let (dx, dy) = (x - c.start.0, y - c.start.1);
            if dx.hypot(dy) < SLOP_PX {
                return None;
            }
            c.dragging = true;
        }
        let dy = y - c.last.1;
        c.last = (x, y);
        Some(Gesture::Drag { dy })
    }

    /// The finger lifted.
    pub fn up(&mut self, now: Instant) -> Option<Gesture> {
        let c = self.contact.take()?;
        let held = now.duration_since(c.since);
        (!c.dragging && !c.long_fired && held < LONG_PRESS).then_some(Gesture::Tap {
            x: c.start.0,
            y: c.start.1,
        })
    }

    /// Time passed with the finger down: long press or key repeat.
    pub fn tick(&mut self, now: Instant) -> Option<Gesture> {
        let c = self.contact.as_mut()?;
        if c.dragging {
            return None;
        }
        if c.repeats {
            if now >= c.next_repeat {
                c.next_repeat = now + REPEAT_EVERY;
                c.long_fired = true; // a repeated key does not also tap on release
                return Some(Gesture::Repeat);
            }
            return None;
        }
        if !c.long_fired && now.duration_since(c.since) >= LONG_PRESS {
            c.long_fired = true;
            return Some(Gesture::LongPress {
                x: c.start.0,
                y: c.start.1,
            });
        }
        None
    }

    /// Whether a finger is down and has become a drag.
    pub fn dragging(&self) -> bool {
        self.contact.is_some_and(|c| c.dragging)
    }

    /// Whether a finger is down.
    pub fn active(&self) -> bool {
        self.contact.is_some()
    }

    /// When [`Tracker::tick`] next has something to say, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        let c = self.contact.as_ref()?;
        if c.dragging {
            None
        } else if c.repeats {
            Some(c.next_repeat)
        } else if !c.long_fired {
            Some(c.since + LONG_PRESS)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quick_still_press_is_a_tap_and_a_slow_one_a_long_press() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        t.down(10.0, 10.0, t0, false);
        assert_eq!(t.moved(14.0, 12.0), None, "within slop");
        assert_eq!(
            t.up(t0 + Duration::from_millis(100)),
            Some(Gesture::Tap { x: 10.0, y: 10.0 })
        );

        t.down(10.0, 10.0, t0, false);
        assert_eq!(t.tick(t0 + Duration::from_millis(500)), None);
        assert_eq!(
            t.tick(t0 + LONG_PRESS),
            Some(Gesture::LongPress { x: 10.0, y: 10.0 })
        );
        assert_eq!(t.tick(t0 + LONG_PRESS * 2), None, "fires once");
        assert_eq!(t.up(t0 + LONG_PRESS * 2), None, "no tap after a long press");
    }

    #[test]
    fn moving_past_the_slop_drags_and_never_taps() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        t.down(100.0, 300.0, t0, false);
        assert_eq!(t.moved(100.0, 280.0), Some(Gesture::Drag { dy: -20.0 }));
        assert_eq!(t.moved(100.0, 250.0), Some(Gesture::Drag { dy: -30.0 }));
        assert_eq!(t.tick(t0 + LONG_PRESS * 2), None);
        assert_eq!(t.up(t0 + Duration::from_millis(50)), None);
    }

    #[test]
    fn a_held_repeating_key_repeats_after_the_delay() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        t.down(0.0, 0.0, t0, true);
        assert_eq!(t.tick(t0 + REPEAT_DELAY / 2), None);
        assert_eq!(t.tick(t0 + REPEAT_DELAY), Some(Gesture::Repeat));
        assert_eq!(t.tick(t0 + REPEAT_DELAY + REPEAT_EVERY / 2), None);
        assert_eq!(
            t.tick(t0 + REPEAT_DELAY + REPEAT_EVERY),
            Some(Gesture::Repeat)
        );
        assert_eq!(t.up(t0 + REPEAT_DELAY * 3), None, "repeat replaces the tap");
    }
}
