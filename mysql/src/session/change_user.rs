//! COM_CHANGE_USER: the session goes on as another user, as MariaDB does
//! it. The new user proves its credential against the connection's
//! challenge (with an auth switch when its plugin asks) and must be allowed
//! the database it names (`users[].databases`); then the session is reset
//! as COM_RESET_CONNECTION resets it (transaction rolled back, variables,
//! prepared statements and held connections gone) and takes the new user,
//! its access, database and character set. A refused change leaves the
//! session as it was, with the error.

use shardgate_core::error::{ErrorKind, ProxyError};
use shardgate_core::metrics;

use super::auth::{admit, login_database, refusal, LoginError};
use super::authenticate::{authenticate, Claim, Exchange};
use super::{failed_login, CommandResult, Failure, Flow, Session};
use crate::backend::Flavor;
use crate::handshake::{client_charset, parse_change_user};
use shardgate_core::access::UserAccess;

impl Session {
    pub(super) async fn change_user(&mut self, packet: &[u8]) -> CommandResult {
        let Ok(request) = parse_change_user(packet, self.capabilities) else {
            return Err(Failure::Reply(ProxyError::new(
                ErrorKind::BadHandshake,
                "Malformed COM_CHANGE_USER packet",
            )));
        };
        let shared = self.shared.clone();
        let claim = Claim {
            user: &request.user,
            capabilities: self.capabilities,
            plugin: request.auth_plugin.as_deref(),
            answer: &request.auth_response,
        };
        let mut exchange = Exchange {
            reader: &mut self.reader,
            writer: &mut self.writer,
            challenge: &self.challenge,
            secure: self.secure,
            fast_auth: &self.front.fast_auth,
        };
        let proved = match authenticate(&mut exchange, &claim, &shared.config.server.users).await {
            Ok(proved) => proved,
            Err(_) => return Err(Failure::ClientGone),
        };
        let user = match proved {
            Ok(user) => user,
            Err(refused) => {
                let peer_ip = self
                    .peer
                    .map_or_else(|| "unknown".into(), |ip| ip.to_string());
                let err = refusal(refused, &request.user, &peer_ip);
                let failed = LoginError::Refused(err.clone());
                failed_login(&shared, self.proxy.admission(), self.peer, &failed);
                return Err(Failure::Reply(err));
            }
        };
        let peer_ip = self
            .peer
            .map_or_else(|| "unknown".into(), |ip| ip.to_string());
        let access = UserAccess::new(user, &peer_ip);
        let db = login_database(&shared, &access, request.database.as_deref())
            .map_err(Failure::Reply)?;
        let slot = admit(self.proxy.admission(), &shared, user).map_err(Failure::Reply)?;
        self.reset().await;
        if let Some(collation) = request.collation {
            self.flavor = Flavor::for_client(self.capabilities, collation);
            self.charset = client_charset(collation);
        }
        self.db = db;
        self.access = access;
        self.database = request.database;
        self._user_slot = slot;
        self.statement_metrics = metrics::SessionMetrics::new(request.user.clone());
        self.registration =
            self.proxy
                .sessions()
                .register(self.registration.id(), &request.user, shared.version);
        self.reply_ok();
        Ok(Flow::Continue)
    }
}
