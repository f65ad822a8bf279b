//! Command bytes of the client/server command phase.

/// The server's own idle state: never a client's command.
pub const COM_SLEEP: u8 = 0x00;
pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PING: u8 = 0x0E;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1A;
pub const COM_SET_OPTION: u8 = 0x1B;
pub const COM_STMT_FETCH: u8 = 0x1C;
pub const COM_RESET_CONNECTION: u8 = 0x1F;

/// A client command packet decoded once, at the top of the session's loop:
/// what the session dispatches on. The packet stays beside it for what is
/// forwarded as it came (field lists, parameters of an execution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    pub kind: CommandKind<'a>,
    /// The whole packet, command byte first.
    pub packet: &'a [u8],
}

/// What a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind<'a> {
    /// COM_QUERY: the statement text (one or several statements).
    Query(&'a [u8]),
    /// COM_STMT_PREPARE: the statement text.
    Prepare(&'a [u8]),
    /// COM_STMT_EXECUTE of a statement id (None: the packet is too short).
    Execute(Option<u32>),
    /// COM_STMT_SEND_LONG_DATA (its statement id and data are read where
    /// they are kept).
    SendLongData,
    /// COM_STMT_CLOSE of a statement id.
    CloseStatement(Option<u32>),
    /// COM_STMT_RESET of a statement id.
    ResetStatement(Option<u32>),
    /// COM_STMT_FETCH from a statement id's cursor.
    Fetch(Option<u32>),
    Ping,
    Quit,
    /// COM_INIT_DB: the database name.
    InitDb(&'a [u8]),
    FieldList,
    Statistics,
    SetOption,
    ResetConnection,
    ChangeUser,
    /// Any other command byte.
    Unknown(u8),
}

impl<'a> Command<'a> {
    /// Decodes a command packet. MariaDB reads an empty one as COM_SLEEP,
    /// a command no client may send (answered 1047, Unknown command).
    pub fn decode(packet: &'a [u8]) -> Command<'a> {
        let Some((&byte, rest)) = packet.split_first() else {
            return Command {
                kind: CommandKind::Unknown(COM_SLEEP),
                packet,
            };
        };
        let id = || super::stmt::statement_id(packet);
        let kind = match byte {
            COM_QUERY => CommandKind::Query(rest),
            COM_STMT_PREPARE => CommandKind::Prepare(rest),
            COM_STMT_EXECUTE => CommandKind::Execute(id()),
            COM_STMT_SEND_LONG_DATA => CommandKind::SendLongData,
            COM_STMT_CLOSE => CommandKind::CloseStatement(id()),
            COM_STMT_RESET => CommandKind::ResetStatement(id()),
            COM_STMT_FETCH => CommandKind::Fetch(id()),
            COM_PING => CommandKind::Ping,
            COM_QUIT => CommandKind::Quit,
            COM_INIT_DB => CommandKind::InitDb(rest),
            COM_FIELD_LIST => CommandKind::FieldList,
            COM_STATISTICS => CommandKind::Statistics,
            COM_SET_OPTION => CommandKind::SetOption,
            COM_RESET_CONNECTION => CommandKind::ResetConnection,
            COM_CHANGE_USER => CommandKind::ChangeUser,
            other => CommandKind::Unknown(other),
        };
        Command { kind, packet }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_decode_with_their_arguments() {
        let query = [COM_QUERY, b'S', b'E', b'L'];
        assert_eq!(Command::decode(&query).kind, CommandKind::Query(b"SEL"));
        let execute = [COM_STMT_EXECUTE, 7, 0, 0, 0, 0, 1, 0, 0, 0];
        let decoded = Command::decode(&execute);
        assert_eq!(decoded.kind, CommandKind::Execute(Some(7)));
        assert_eq!(decoded.packet, &execute);
        assert_eq!(
            Command::decode(&[COM_STMT_CLOSE, 1]).kind,
            CommandKind::CloseStatement(None),
            "a statement id cut short is no id"
        );
        assert_eq!(
            Command::decode(&[COM_INIT_DB, b'd', b'b']).kind,
            CommandKind::InitDb(b"db")
        );
        assert_eq!(Command::decode(&[0x7F]).kind, CommandKind::Unknown(0x7F));
        assert_eq!(
            Command::decode(&[COM_STMT_FETCH, 2, 0, 0, 0, 1, 0, 0, 0]).kind,
            CommandKind::Fetch(Some(2))
        );
        assert_eq!(
            Command::decode(&[]).kind,
            CommandKind::Unknown(COM_SLEEP),
            "an empty packet is MariaDB's COM_SLEEP"
        );
        assert_eq!(
            Command::decode(&[COM_STMT_PREPARE, b'x']).kind,
            CommandKind::Prepare(b"x")
        );
    }
}
