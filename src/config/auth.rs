//! Auth token files `{"Value": "...", "Issued": "..."}` (Go `sdk.AuthToken`, no JSON tags).
