//! Which PKey write routes one UFM host serves, and in which order the client tries them:
//! pure decisions from UFM's release version (`shared/reference/ufm-api.md` §7) and from its
//! answers (a 404 or 405 for the route itself, told apart from a 404 about a PKey or a GUID).
//! The client in the parent module sends the requests and keeps one [`RouteSet`] per host;
//! nothing here does I/O.
//!
//! The documented routes come first, the deprecated `/actions/*` equivalents second:
//! - add GUIDs: `POST /resources/pkeys`, else `POST /actions/add_guids_to_pkey`;
//! - remove GUIDs: `DELETE /resources/pkeys/{pkey}/guids/{guids}`, else
//!   `POST /actions/remove_guids_from_pkey`;
//! - delete a partition: `DELETE /resources/pkeys/{pkey}`, else by removing its last GUIDs
//!   (UFM deletes a partition left without members), else not at all;
//! - create an empty partition: `POST /resources/pkeys/add`, else an add without GUIDs.
//!
//! Reads (`GET /app/ufm_version`, `GET /resources/pkeys`, `GET /resources/pkeys/{pkey}`) are
//! served by every supported version and are not part of a route set.

use std::fmt;

/// A PKey write route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Route {
    /// `POST /resources/pkeys/add`: an empty partition (documented from 6.15.1; not in 6.10–6.12).
    CreateEmpty,
    /// `POST /resources/pkeys`: add GUIDs, creating the partition when missing (6.10+).
    Add,
    /// `DELETE /resources/pkeys/{pkey}/guids/{guids}`: remove GUIDs (6.10+).
    RemoveCsv,
    /// `DELETE /resources/pkeys/{pkey}`: delete a partition with its GUIDs (6.10+).
    Delete,
    /// `POST /actions/add_guids_to_pkey`: deprecated since 6.10, the API of 6.9 and earlier.
    ActionsAdd,
    /// `POST /actions/remove_guids_from_pkey`: deprecated since 6.10, still in wide use.
    ActionsRemove,
}

/// Every route, in the order of [`RouteSet`]'s table.
const ROUTES: [Route; 6] = [
    Route::CreateEmpty,
    Route::Add,
    Route::RemoveCsv,
    Route::Delete,
    Route::ActionsAdd,
    Route::ActionsRemove,
];

impl Route {
    /// Method and path, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Route::CreateEmpty => "POST /resources/pkeys/add",
            Route::Add => "POST /resources/pkeys",
            Route::RemoveCsv => "DELETE /resources/pkeys/{pkey}/guids/{guids}",
            Route::Delete => "DELETE /resources/pkeys/{pkey}",
            Route::ActionsAdd => "POST /actions/add_guids_to_pkey",
            Route::ActionsRemove => "POST /actions/remove_guids_from_pkey",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is known of one route on one host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Serving {
    /// Not tried yet (or tried again after every route of its operation failed): try it.
    #[default]
    Unknown,
    /// It answered with something other than "no such route".
    Served,
    /// The host's version does not document it, or it answered 404/405 for the route.
    Missing,
}

/// How this host deletes a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deleting {
    /// `DELETE /resources/pkeys/{pkey}`.
    Route,
    /// By removing the partition's last GUIDs through this route.
    ByRemovingGuids(Route),
    /// No route left that could.
    Impossible,
}

/// How this host creates an empty partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Creating {
    /// `POST /resources/pkeys/add`.
    Route,
    /// An add (through this route) without GUIDs, checked by reading the partition back.
    EmptyAdd(Route),
    /// No route left that could.
    Impossible,
}

/// A UFM release as `(major, minor, patch)`.
pub(crate) type Version = (u32, u32, u32);

/// What is known of one host's PKey write routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RouteSet {
    /// The release that the host reported, when it could be read.
    version: Option<Version>,
    serving: [Serving; 6],
}

impl RouteSet {
    /// The routes `version` (UFM's `ufm_release_version`, such as `6.19.1-4`) documents:
    /// those its documentation lacks are missing, the others are tried. A version that does
    /// not read as `MAJOR.MINOR[.PATCH]` settles nothing.
    #[cfg(test)]
    fn for_version(version: &str) -> RouteSet {
        let mut set = RouteSet::default();
        set.set_version(version);
        set
    }

    /// Adds what `version` documents to what the answers said: a route the version lacks is
    /// missing.
    pub(crate) fn set_version(&mut self, version: &str) {
        self.version = parse_version(version);
        for route in ROUTES {
            if self.version.is_some_and(|v| !documented(v, route)) {
                self.serving[route.index()] = Serving::Missing;
            }
        }
    }

    /// The release the host reported, when it could be read.
    pub(crate) fn version(&self) -> Option<Version> {
        self.version
    }

    /// What is known of `route`.
    pub(crate) fn serving(&self, route: Route) -> Serving {
        self.serving[route.index()]
    }

    /// Whether some route is known to be missing.
    pub(crate) fn lacks_any(&self) -> bool {
        self.serving.contains(&Serving::Missing)
    }

    /// Records what an answer showed; returns whether it changed anything.
    pub(crate) fn learn(&mut self, route: Route, serving: Serving) -> bool {
        let slot = &mut self.serving[route.index()];
        let changed = *slot != serving;
        *slot = serving;
        changed
    }

    /// Every route of `routes` failed: forget what the answers said (not what the version
    /// says), so that the next attempt asks UFM again (it may have been upgraded, or the
    /// answers came from a proxy in trouble).
    pub(crate) fn forget(&mut self, routes: &[Route]) {
        for route in routes {
            let by_version = self.version.is_some_and(|v| !documented(v, *route));
            self.serving[route.index()] = if by_version {
                Serving::Missing
            } else {
                Serving::Unknown
            };
        }
    }

    /// The routes that add GUIDs, in the order to try them.
    pub(crate) fn adds(&self) -> Vec<Route> {
        self.usable(&[Route::Add, Route::ActionsAdd])
    }

    /// The routes that remove GUIDs, in the order to try them.
    pub(crate) fn removes(&self) -> Vec<Route> {
        self.usable(&[Route::RemoveCsv, Route::ActionsRemove])
    }

    /// How a partition is deleted here.
    pub(crate) fn deleting(&self) -> Deleting {
        if self.serving(Route::Delete) != Serving::Missing {
            return Deleting::Route;
        }
        match self.removes().first() {
            Some(route) => Deleting::ByRemovingGuids(*route),
            None => Deleting::Impossible,
        }
    }

    /// How an empty partition is created here.
    pub(crate) fn creating(&self) -> Creating {
        if self.serving(Route::CreateEmpty) != Serving::Missing {
            return Creating::Route;
        }
        match self.adds().first() {
            Some(route) => Creating::EmptyAdd(*route),
            None => Creating::Impossible,
        }
    }

    /// One line: the route each operation goes through now.
    pub(crate) fn summary(&self) -> String {
        let first = |routes: Vec<Route>| {
            routes
                .first()
                .map_or("none served".to_string(), |r| r.name().to_string())
        };
        let delete = match self.deleting() {
            Deleting::Route => Route::Delete.name().to_string(),
            Deleting::ByRemovingGuids(route) => format!("by removing its last GUIDs ({route})"),
            Deleting::Impossible => "impossible".to_string(),
        };
        let create = match self.creating() {
            Creating::Route => Route::CreateEmpty.name().to_string(),
            Creating::EmptyAdd(route) => format!("{route} without GUIDs"),
            Creating::Impossible => "impossible".to_string(),
        };
        format!(
            "add {}; remove {}; delete a partition {delete}; create an empty one {create}",
            first(self.adds()),
            first(self.removes())
        )
    }

    fn usable(&self, routes: &[Route]) -> Vec<Route> {
        routes
            .iter()
            .copied()
            .filter(|r| self.serving(*r) != Serving::Missing)
            .collect()
    }
}

/// Whether the documentation of UFM `version` lists `route` (ufm-api.md §3.3, §3.7, §7):
/// 6.9 and earlier have the `/actions/*` API only; `/resources/pkeys` is there from 6.10;
/// `/resources/pkeys/add` is absent from the 6.10–6.12 pages and present from 6.15.1 (6.13
/// and 6.14 were not checked: it is tried there). The `/actions/*` routes are deprecated
/// but listed by every version.
fn documented(version: Version, route: Route) -> bool {
    let resources = version >= (6, 10, 0);
    match route {
        Route::ActionsAdd | Route::ActionsRemove => true,
        Route::Add | Route::RemoveCsv | Route::Delete => resources,
        Route::CreateEmpty => version >= (6, 13, 0),
    }
}

/// `6.19.1-4` → `(6, 19, 1)`; a leading `v` and a missing patch are fine.
pub(crate) fn parse_version(text: &str) -> Option<Version> {
    let release = text.trim().trim_start_matches(['v', 'V']);
    let release = release.split(['-', ' ', '_']).next()?;
    let mut parts = release.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    Some((major, minor, patch))
}

/// Whether a 404 or 405 says that the server has no such route (or not with this method),
/// rather than something about a PKey or a GUID: a 405 always; a 404 whose body carries no
/// message of UFM's own (empty, a web page, plain text, or a JSON "not found" that names
/// nothing, as axum, Apache, Flask and FastAPI answer for an unknown path). A JSON error
/// naming what is missing (`{"error": "InfiniBand port … does not exist"}`) is UFM's own.
pub(crate) fn is_route_answer(status: u16, body: &[u8]) -> bool {
    match status {
        405 => true,
        404 => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(map)) => ["error", "detail", "message"]
                .iter()
                .filter_map(|f| map.get(*f).and_then(|v| v.as_str()))
                .any(names_nothing),
            Ok(_) => false,
            Err(_) => true,
        },
        _ => false,
    }
}

/// A "not found" that says only that the path is unknown.
fn names_nothing(message: &str) -> bool {
    let text = message.trim().trim_end_matches('.').to_ascii_lowercase();
    text == "not found"
        || text == "404 not found"
        || text.contains("requested url")
        || (text.starts_with("resource /") && text.ends_with(" not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_ufm_writes_them() {
        assert_eq!(parse_version("6.19.1-4"), Some((6, 19, 1)));
        assert_eq!(parse_version("6.11.1-2"), Some((6, 11, 1)));
        assert_eq!(parse_version("v6.22"), Some((6, 22, 0)));
        assert_eq!(parse_version("6.9.0-5 build 12"), Some((6, 9, 0)));
        assert_eq!(parse_version("carbide-ufm-mock"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("6"), None);
    }

    #[test]
    fn a_recent_ufm_uses_the_documented_routes() {
        for version in ["6.19.1-4", "6.15.1-2", "6.24.0-7", "7.0.0"] {
            let set = RouteSet::for_version(version);
            assert_eq!(set.adds(), [Route::Add, Route::ActionsAdd], "{version}");
            assert_eq!(
                set.removes(),
                [Route::RemoveCsv, Route::ActionsRemove],
                "{version}"
            );
            assert_eq!(set.deleting(), Deleting::Route, "{version}");
            assert_eq!(set.creating(), Creating::Route, "{version}");
        }
    }

    #[test]
    fn ufm_6_10_to_6_12_has_no_create_empty_route() {
        for version in ["6.10.0-1", "6.11.1-2", "6.12.0"] {
            let set = RouteSet::for_version(version);
            assert_eq!(set.serving(Route::CreateEmpty), Serving::Missing);
            assert_eq!(set.creating(), Creating::EmptyAdd(Route::Add), "{version}");
            assert_eq!(set.deleting(), Deleting::Route, "{version}");
        }
        // Not checked in the documentation: tried, and learned from the answer.
        let set = RouteSet::for_version("6.14.0-3");
        assert_eq!(set.serving(Route::CreateEmpty), Serving::Unknown);
    }

    #[test]
    fn ufm_6_9_and_earlier_use_the_actions_routes() {
        let set = RouteSet::for_version("6.9.0-5");
        assert_eq!(set.adds(), [Route::ActionsAdd]);
        assert_eq!(set.removes(), [Route::ActionsRemove]);
        assert_eq!(
            set.deleting(),
            Deleting::ByRemovingGuids(Route::ActionsRemove)
        );
        assert_eq!(set.creating(), Creating::EmptyAdd(Route::ActionsAdd));
    }

    #[test]
    fn an_unreadable_version_settles_nothing() {
        let set = RouteSet::for_version("unknown");
        assert_eq!(set.version(), None);
        assert_eq!(set, RouteSet::default());
        assert_eq!(set.deleting(), Deleting::Route);
    }

    #[test]
    fn answers_move_each_operation_to_its_fallback() {
        // What NVIDIA's UFM mock answers, though it reports 6.19.1-4.
        let mut set = RouteSet::for_version("6.19.1-4");
        assert!(set.learn(Route::RemoveCsv, Serving::Missing));
        assert!(!set.learn(Route::RemoveCsv, Serving::Missing), "no change");
        assert!(set.learn(Route::Delete, Serving::Missing));
        assert!(set.learn(Route::CreateEmpty, Serving::Missing));
        assert_eq!(set.removes(), [Route::ActionsRemove]);
        assert_eq!(
            set.deleting(),
            Deleting::ByRemovingGuids(Route::ActionsRemove)
        );
        assert_eq!(set.creating(), Creating::EmptyAdd(Route::Add));
        assert_eq!(
            set.summary(),
            "add POST /resources/pkeys; remove POST /actions/remove_guids_from_pkey; \
             delete a partition by removing its last GUIDs (POST /actions/remove_guids_from_pkey); \
             create an empty one POST /resources/pkeys without GUIDs"
        );

        set.learn(Route::ActionsRemove, Serving::Missing);
        assert_eq!(set.removes(), []);
        assert_eq!(set.deleting(), Deleting::Impossible);
    }

    #[test]
    fn forgetting_keeps_what_the_version_says() {
        let mut set = RouteSet::for_version("6.11.1-2");
        set.learn(Route::Add, Serving::Missing);
        set.learn(Route::ActionsAdd, Serving::Missing);
        set.forget(&[Route::Add, Route::ActionsAdd, Route::CreateEmpty]);
        assert_eq!(set.adds(), [Route::Add, Route::ActionsAdd]);
        assert_eq!(set.serving(Route::CreateEmpty), Serving::Missing);
    }

    #[test]
    fn a_route_404_is_told_apart_from_a_pkey_or_guid_404() {
        // axum's bare 404, Apache's and Flask's pages, plain text: the route.
        assert!(is_route_answer(404, b""));
        assert!(is_route_answer(
            404,
            b"<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\"><title>404 Not Found</title>"
        ));
        assert!(is_route_answer(404, b"404 page not found"));
        assert!(is_route_answer(404, br#"{"detail": "Not Found"}"#));
        assert!(is_route_answer(
            404,
            br#"{"message": "The requested URL was not found on the server."}"#
        ));
        // A method the route does not take.
        assert!(is_route_answer(405, b""));
        assert!(is_route_answer(
            405,
            br#"{"error": "Method DELETE not allowed"}"#
        ));
        // UFM's own word about a PKey or a port.
        assert!(!is_route_answer(
            404,
            br#"{"error": "PKey 0x3000 does not exist"}"#
        ));
        assert!(!is_route_answer(
            404,
            br#"{"error": "InfiniBand port 0002c903000e0b72 does not exist"}"#
        ));
        assert!(!is_route_answer(
            404,
            br#"{"detail": "PKey 0x12 not found"}"#
        ));
        assert!(!is_route_answer(404, b"{}"));
        // Not a 404 or 405 at all.
        assert!(!is_route_answer(400, b""));
        assert!(!is_route_answer(200, b""));
    }
}
