//! The integer ids a compiled tenant interns its names into.

/// Index of an action (`kind.verb`) in its tenant.
pub type ActionId = u32;
/// Index of a unit in its tenant.
pub type UnitId = u32;
/// Index of a role in its tenant.
pub type RoleId = u32;
