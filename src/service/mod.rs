//! Front-end adapters over the [`crate::studio::Studio`]; no logic of their own.

pub mod dbus;
