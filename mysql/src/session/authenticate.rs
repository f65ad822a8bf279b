//! Proving a user's credential with the user's plugin, at login and on
//! COM_CHANGE_USER: the auth switch when the client answered with another
//! plugin, `caching_sha2_password`'s fast path and full authentication,
//! MariaDB ed25519's signed challenge.

use mysql_common::constants::CapabilityFlags;
use shardgate_core::net::{ReadHalf, WriteHalf};
use shardgate_rules::config::{AuthPlugin, Credential, UserConfig};

use crate::auth::{caching_sha2, ed25519, native};
use crate::handshake::auth_switch_request;
use crate::packet::{PacketReader, PacketWriter};

use super::auth::LoginError;

/// Login packets are small; anything bigger is not a client.
pub const LOGIN_PACKET_LIMIT: usize = 64 * 1024;

/// What the client claimed: the user and its first answer to the
/// connection's 20-byte challenge.
pub struct Claim<'a> {
    pub user: &'a str,
    pub capabilities: CapabilityFlags,
    /// The plugin the client answered with.
    pub plugin: Option<&'a str>,
    pub answer: &'a [u8],
}

/// Why a proof failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No such user, or a wrong answer; whether the client sent a password.
    Denied { used_password: bool },
    /// `caching_sha2_password` needs the password itself, which the proxy
    /// takes over TLS only.
    NeedsTls,
}

/// The user who proved its credential, or why none did.
pub type Verdict<'u> = Result<&'u UserConfig, Refused>;

/// The connection the exchanges go over, and what they need from it.
pub struct Exchange<'a> {
    pub reader: &'a mut PacketReader<ReadHalf>,
    pub writer: &'a mut PacketWriter<WriteHalf>,
    pub challenge: &'a [u8; 20],
    pub secure: bool,
    pub fast_auth: &'a caching_sha2::FastAuthCache,
}

impl Exchange<'_> {
    /// Sends one packet and reads the client's answer.
    async fn ask(&mut self, payload: &[u8]) -> Result<Vec<u8>, LoginError> {
        self.writer.push(payload);
        self.writer.flush().await?;
        let (seq, answer) = self.reader.read_packet(LOGIN_PACKET_LIMIT).await?;
        self.writer.set_seq(seq.wrapping_add(1));
        Ok(answer.to_vec())
    }

    /// The client's answer with `plugin` to `challenge`: its first one when
    /// it used that plugin already, else asked for with an auth switch
    /// (None: the client cannot switch).
    async fn answer_with(
        &mut self,
        claim: &Claim<'_>,
        plugin: &str,
        challenge: &[u8],
    ) -> Result<Option<Vec<u8>>, LoginError> {
        let can_switch = claim
            .capabilities
            .contains(CapabilityFlags::CLIENT_PLUGIN_AUTH);
        // Without plugin support the answer is mysql_native_password's.
        let answered = if can_switch {
            claim.plugin
        } else {
            Some(native::NAME)
        };
        if answered == Some(plugin) {
            return Ok(Some(claim.answer.to_vec()));
        }
        if !can_switch {
            return Ok(None);
        }
        self.ask(&auth_switch_request(plugin, challenge))
            .await
            .map(Some)
    }

    /// The client's answer with `plugin` to the connection's challenge,
    /// which an auth switch sends NUL-terminated, as MySQL does.
    async fn answer_with_challenge(
        &mut self,
        claim: &Claim<'_>,
        plugin: &str,
    ) -> Result<Option<Vec<u8>>, LoginError> {
        let mut with_nul = self.challenge.to_vec();
        with_nul.push(0);
        self.answer_with(claim, plugin, &with_nul).await
    }
}

/// Proves `claim` against the configured user it names.
pub async fn authenticate<'u>(
    exchange: &mut Exchange<'_>,
    claim: &Claim<'_>,
    users: &'u [UserConfig],
) -> Result<Verdict<'u>, LoginError> {
    let Some(user) = users.iter().find(|u| u.name == claim.user) else {
        return Ok(Err(denied(claim.answer)));
    };
    let proof = match user.plugin() {
        AuthPlugin::MysqlNativePassword => native(exchange, claim, user).await?,
        AuthPlugin::CachingSha2Password => caching_sha2(exchange, claim, user).await?,
        AuthPlugin::Ed25519 => ed25519(exchange, claim, user).await?,
    };
    Ok(proof.map(|()| user))
}

/// A refusal of `answer`.
fn denied(answer: &[u8]) -> Refused {
    Refused::Denied {
        used_password: !answer.is_empty(),
    }
}

async fn native(
    exchange: &mut Exchange<'_>,
    claim: &Claim<'_>,
    user: &UserConfig,
) -> Result<Result<(), Refused>, LoginError> {
    let challenge = *exchange.challenge;
    let Some(answer) = exchange.answer_with_challenge(claim, native::NAME).await? else {
        return Ok(Err(denied(claim.answer)));
    };
    let proved = match &user.credential {
        Credential::Password(p) if p.is_empty() => answer.is_empty(),
        Credential::Password(p) => {
            native::verify(&challenge, &native::stored_hash(p.as_bytes()), &answer)
        }
        Credential::NativeHash(stored) => native::verify(&challenge, stored, &answer),
        Credential::Ed25519Key(_) => false,
    };
    Ok(if proved { Ok(()) } else { Err(denied(&answer)) })
}

async fn ed25519(
    exchange: &mut Exchange<'_>,
    claim: &Claim<'_>,
    user: &UserConfig,
) -> Result<Result<(), Refused>, LoginError> {
    if !claim
        .capabilities
        .contains(CapabilityFlags::CLIENT_PLUGIN_AUTH)
    {
        return Ok(Err(denied(claim.answer)));
    }
    // A fresh 32-byte challenge, as MariaDB's plugin sends, always by an
    // auth switch: a client cannot have answered it yet.
    let nonce: [u8; 32] = rand::random();
    let answer = exchange
        .ask(&auth_switch_request(ed25519::NAME, &nonce))
        .await?;
    let key = match &user.credential {
        Credential::Password(p) => ed25519::public_key(p.as_bytes()),
        Credential::Ed25519Key(key) => *key,
        Credential::NativeHash(_) => return Ok(Err(denied(&answer))),
    };
    Ok(if ed25519::verify(&key, &nonce, &answer) {
        Ok(())
    } else {
        Err(denied(&answer))
    })
}

async fn caching_sha2(
    exchange: &mut Exchange<'_>,
    claim: &Claim<'_>,
    user: &UserConfig,
) -> Result<Result<(), Refused>, LoginError> {
    let challenge = *exchange.challenge;
    let Some(answer) = exchange
        .answer_with_challenge(claim, caching_sha2::NAME)
        .await?
    else {
        return Ok(Err(denied(claim.answer)));
    };
    // An empty password is answered with nothing (or a lone NUL).
    if answer.is_empty() || answer == [0] {
        let proved = user.credential == Credential::Password(String::new());
        return Ok(if proved { Ok(()) } else { Err(denied(&[])) });
    }
    let wrong = || Ok(Err(denied(&answer)));
    let digest = match &user.credential {
        Credential::Password(p) => Some(caching_sha2::digest(p.as_bytes())),
        Credential::NativeHash(stored) => exchange.fast_auth.digest(&user.name, stored),
        Credential::Ed25519Key(_) => return wrong(),
    };
    if digest.is_some_and(|digest| caching_sha2::verify(&challenge, &digest, &answer)) {
        exchange.writer.push(&[0x01, caching_sha2::FAST_AUTH_OK]);
        return Ok(Ok(()));
    }
    // Full authentication, also after a scramble that does not match, as
    // MySQL asks for it (some clients scramble wrongly and rely on that):
    // the password itself, NUL-terminated.
    let reply = exchange
        .ask(&[0x01, caching_sha2::PERFORM_FULL_AUTHENTICATION])
        .await?;
    if !exchange.secure {
        // The client asks for an RSA key (or sends nothing useful).
        return Ok(Err(Refused::NeedsTls));
    }
    let password = reply.strip_suffix(&[0]).unwrap_or(&reply);
    let stored = match &user.credential {
        Credential::Password(p) => native::stored_hash(p.as_bytes()),
        Credential::NativeHash(stored) => *stored,
        Credential::Ed25519Key(_) => return wrong(),
    };
    if !crate::auth::constant_time_eq(&native::stored_hash(password), &stored) {
        return wrong();
    }
    exchange
        .fast_auth
        .learn(&user.name, stored, caching_sha2::digest(password));
    Ok(Ok(()))
}
