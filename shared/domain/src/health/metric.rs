//! The model's vocabulary: its metrics and the components they belong to. A leaf,
//! so the config (which weighs metrics) and the model (which reads the config) do not
//! import each other in a circle; their behaviour is implemented in `model`.

use serde::{Deserialize, Serialize};

/// A normalised input of the model. Each belongs to one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean relative change of the key meters, last 30 d vs the prior 30 d.
    UsageTrend,
    /// Mean relative change of the key meters' median week, last 4 weeks vs the 8
    /// before: the trend, robust to one burst or quiet week.
    UsageLevel,
    /// Share of due milestones reached by their due day.
    MilestonesOnTime,
    /// Days to each milestone (or days waited so far) / due days; lower is better.
    TimeToValue,
    /// Tickets opened in 30 d per active user.
    TicketsPerUser,
    /// Tickets reopened / opened, 30 d.
    ReopenRate,
    /// Escalations in 30 d per active user.
    EscalationsPerUser,
    /// Relative change of tickets opened, last 30 d vs prior 30 d.
    TicketTrend,
    /// Average active users (14 d) / peak active users (90 d): active contacts vs seats.
    Utilisation,
    /// Share of the last 8 weeks with key-meter activity.
    WeeklyConsistency,
    /// Recency: `ln(1 + days since the last key-feature use)` (1 = yesterday; 91
    /// when none in the window); lower is better.
    KeyRecency,
    /// Frequency: `ln(1 + days with key-feature use per 90 days)` (over the days since
    /// onboarding when fewer than 90). Logarithmic like recency: one more active day
    /// matters more to an account active on 2 days than to one active on 60.
    KeyActiveDays,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    UsageTrend,
    Milestones,
    Friction,
    Engagement,
}
