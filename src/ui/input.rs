//! Touch, pointer and keyboard through libinput (the `input` crate): every
//! device of the udev seat, or the device files the config lists. Events
//! become one small [`UiEvent`] type in the UI's logical (rotated)
//! coordinates; only the first finger counts. libinput is not `Send`, so an
//! `Input` lives on the UI thread.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use input::event::keyboard::{KeyState, KeyboardEventTrait};
use input::event::pointer::{ButtonState, PointerEvent};
use input::event::touch::{TouchEvent, TouchEventPosition, TouchEventSlot};
use input::event::{DeviceEvent, Event, KeyboardEvent};
use input::{Libinput, LibinputInterface};

use super::UiError;
use super::app::KeyInput;

/// What the UI consumes from any input device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UiEvent {
    /// A finger (or the left button) went down.
    Press {
        /// Logical x.
        x: f32,
        /// Logical y.
        y: f32,
    },
    /// It moved while down.
    Move {
        /// Logical x.
        x: f32,
        /// Logical y.
        y: f32,
    },
    /// It lifted.
    Release,
    /// A key on a physical keyboard.
    Key(KeyInput),
}

struct Opener;

impl LibinputInterface for Opener {
    fn open_restricted(&mut self, path: &Path, flags: i32) -> Result<OwnedFd, i32> {
        let flags = rustix::fs::OFlags::from_bits_retain(flags as _) | rustix::fs::OFlags::CLOEXEC;
        rustix::fs::open(path, flags, rustix::fs::Mode::empty()).map_err(|e| e.raw_os_error())
    }

    fn close_restricted(&mut self, fd: OwnedFd) {
        drop(fd);
    }
}

/// Maps panel coordinates to the UI's logical ones (inverse of the
/// display rotation).
#[derive(Debug, Clone, Copy)]
pub struct Orientation {
    /// Panel (mode) size.
    pub physical: (u32, u32),
    /// Degrees clockwise, as in the config.
    pub rotation: u32,
}

impl Orientation {
    /// Logical point for a panel point.
    pub fn to_logical(&self, px: f32, py: f32) -> (f32, f32) {
        let (pw, ph) = (self.physical.0 as f32, self.physical.1 as f32);
        match self.rotation {
            90 => (py, pw - 1.0 - px),
            180 => (pw - 1.0 - px, ph - 1.0 - py),
            270 => (ph - 1.0 - py, px),
            _ => (px, py),
        }
    }
}

/// See the module doc.
pub struct Input {
    libinput: Libinput,
    orientation: Orientation,
    calibration: Option<[f32; 6]>,
    finger: Option<u32>,
    button_down: bool,
    cursor: (f64, f64),
    shift: bool,
    devices: usize,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

impl Input {
    /// Open the udev seat (`devices` empty) or the listed device files.
    pub fn open(
        devices: &[String],
        orientation: Orientation,
        calibration: Option<[f32; 6]>,
    ) -> Result<Self, UiError> {
        let libinput = if devices.is_empty() {
            let mut li = Libinput::new_with_udev(Opener);
            li.udev_assign_seat("seat0")
                .map_err(|()| UiError::Input("cannot assign udev seat0".into()))?;
            li
        } else {
            let mut li = Libinput::new_from_path(Opener);
            for path in devices {
                if li.path_add_device(path).is_none() {
                    log::warn!("input: cannot open {path}");
                }
            }
            li
        };
        let mut input = Input {
            libinput,
            orientation,
            calibration,
            finger: None,
            button_down: false,
            cursor: (0.0, 0.0),
            shift: false,
            devices: 0,
        };
        // Drain the device-added events so the count is known.
        input.read();
        Ok(input)
    }

    /// Devices seen so far.
    pub fn devices(&self) -> usize {
        self.devices
    }

    /// Readable when events wait.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.libinput.as_fd()
    }

    /// Read everything pending.
    pub fn read(&mut self) -> Vec<UiEvent> {
        if let Err(e) = self.libinput.dispatch() {
            log::warn!("input: {e}");
            return Vec::new();
        }
        let mut out = Vec::new();
        let events: Vec<Event> = (&mut self.libinput).collect();
        for event in events {
            self.translate(event, &mut out);
        }
        out
    }

    fn point(&self, px: f64, py: f64) -> (f32, f32) {
        self.orientation.to_logical(px as f32, py as f32)
    }

    fn translate(&mut self, event: Event, out: &mut Vec<UiEvent>) {
        let (pw, ph) = self.orientation.physical;
        match event {
            Event::Device(DeviceEvent::Added(added)) => {
                let mut device = input::event::EventTrait::device(&added);
                self.devices += 1;
                log::info!("input: {}", device.name());
                if let Some(matrix) = self.calibration
                    && device.config_calibration_has_matrix()
                    && device.config_calibration_set_matrix(matrix).is_err()
                {
                    log::warn!("input: {} rejects the calibration matrix", device.name());
                }
            }
            Event::Device(DeviceEvent::Removed(_)) => self.devices = self.devices.saturating_sub(1),
            Event::Touch(TouchEvent::Down(e)) if self.finger.is_none() => {
                self.finger = Some(e.seat_slot());
                let (x, y) = self.point(e.x_transformed(pw), e.y_transformed(ph));
                out.push(UiEvent::Press { x, y });
            }
            Event::Touch(TouchEvent::Motion(e)) if self.finger == Some(e.seat_slot()) => {
                let (x, y) = self.point(e.x_transformed(pw), e.y_transformed(ph));
                out.push(UiEvent::Move { x, y });
            }
            Event::Touch(TouchEvent::Up(e)) if self.finger == Some(e.seat_slot()) => {
                self.finger = None;
                out.push(UiEvent::Release);
            }
            Event::Touch(TouchEvent::Cancel(_)) if self.finger.is_some() => {
                self.finger = None;
                out.push(UiEvent::Release);
            }
            Event::Pointer(PointerEvent::Motion(e)) => {
                let (lw, lh) = (pw as f64, ph as f64);
                self.cursor = (
                    (self.cursor.0 + e.dx()).clamp(0.0, lw - 1.0),
                    (self.cursor.1 + e.dy()).clamp(0.0, lh - 1.0),
                );
                self.pointer_moved(out);
            }
            Event::Pointer(PointerEvent::MotionAbsolute(e)) => {
                self.cursor = (e.absolute_x_transformed(pw), e.absolute_y_transformed(ph));
                self.pointer_moved(out);
            }
            Event::Pointer(PointerEvent::Button(e)) if e.button() == BTN_LEFT => {
                let (x, y) = self.point(self.cursor.0, self.cursor.1);
                match e.button_state() {
                    ButtonState::Pressed => {
                        self.button_down = true;
                        out.push(UiEvent::Press { x, y });
                    }
                    ButtonState::Released => {
                        self.button_down = false;
                        out.push(UiEvent::Release);
                    }
                }
            }
            Event::Keyboard(KeyboardEvent::Key(e)) => {
                let pressed = e.key_state() == KeyState::Pressed;
                if matches!(e.key(), KEY_LEFTSHIFT | KEY_RIGHTSHIFT) {
                    self.shift = pressed;
                } else if pressed && let Some(key) = key_input(e.key(), self.shift) {
                    out.push(UiEvent::Key(key));
                }
            }
            _ => {}
        }
    }

    fn pointer_moved(&self, out: &mut Vec<UiEvent>) {
        if self.button_down {
            let (x, y) = self.point(self.cursor.0, self.cursor.1);
            out.push(UiEvent::Move { x, y });
        }
    }
}

const BTN_LEFT: u32 = 0x110;
const KEY_LEFTSHIFT: u32 = 42;
const KEY_RIGHTSHIFT: u32 = 54;

/// A US-layout key code as typed text (development keyboards).
fn key_input(code: u32, shift: bool) -> Option<KeyInput> {
    const ROWS: [(u32, &str); 4] = [
        (2, "1234567890-="),
        (16, "qwertyuiop[]"),
        (30, "asdfghjkl;'"),
        (44, "zxcvbnm,./"),
    ];
    match code {
        1 => return Some(KeyInput::Escape),
        14 => return Some(KeyInput::Backspace),
        28 | 96 => return Some(KeyInput::Enter),
        57 => return Some(KeyInput::Char(' ')),
        _ => {}
    }
    for (first, chars) in ROWS {
        if let Some(c) = code
            .checked_sub(first)
            .and_then(|i| chars.chars().nth(i as usize))
        {
            return Some(KeyInput::Char(if shift { shifted(c) } else { c }));
        }
    }
    None
}

fn shifted(c: char) -> char {
    match c {
        'a'..='z' => c.to_ascii_uppercase(),
        '1' => '!',
        '2' => '@',
        '3' => '#',
        '4' => '$',
        '5' => '%',
        '7' => '&',
        '8' => '*',
        '9' => '(',
        '0' => ')',
        '-' => '_',
        '=' => '+',
        ';' => ':',
        '\'' => '"',
        ',' => '<',
        '.' => '>',
        '/' => '?',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_touches_land_where_the_rotated_display_drew() {
        // A 800x480 panel mounted rotated: the UI lays out 480x800.
        for rotation in [0, 90, 180, 270] {
            let o = Orientation {
                physical: (800, 480),
                rotation,
            };
            let logical = if rotation % 180 == 0 {
                (800, 480)
            } else {
                (480, 800)
            };
            // Logical (10, 20) is drawn at the same panel pixel the display
            // copy sends it to; touching that pixel must give (10, 20) back.
            let area = super::super::scene::Area {
                x: 10,
                y: 20,
                w: 1,
                h: 1,
            };
            let mut frame = tiny_skia::Pixmap::new(logical.0, logical.1).unwrap();
            frame.data_mut()[((20 * logical.0 + 10) * 4) as usize] = 255;
            let mut panel = vec![0u8; 800 * 480 * 4];
            super::super::drm::copy_area(&frame, &area, &mut panel, 800 * 4, (800, 480), rotation);
            let index = panel.chunks_exact(4).position(|p| p[2] == 255).unwrap();
            let (px, py) = ((index % 800) as f32, (index / 800) as f32);
            assert_eq!(o.to_logical(px, py), (10.0, 20.0), "rotation {rotation}");
        }
    }

    #[test]
    fn us_key_codes_type_text() {
        assert_eq!(key_input(30, false), Some(KeyInput::Char('a')));
        assert_eq!(key_input(30, true), Some(KeyInput::Char('A')));
        assert_eq!(key_input(2, true), Some(KeyInput::Char('!')));
        assert_eq!(key_input(14, false), Some(KeyInput::Backspace));
        assert_eq!(key_input(200, false), None);
    }
}
