//! Binary-protocol statement packets: the proxy gives clients its own
//! statement ids and re-targets each COM_STMT_EXECUTE at whichever backend
//! connection serves it, so these helpers rewrite ids and parameter types in
//! place without decoding parameter values.

/// Reads the statement id of COM_STMT_EXECUTE / SEND_LONG_DATA / CLOSE / RESET
/// (the four bytes after the command byte).
pub fn statement_id(payload: &[u8]) -> Option<u32> {
    let b = payload.get(1..5)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Overwrites the statement id of a prepare-OK or a statement command.
pub fn set_statement_id(payload: &mut [u8], id: u32) {
    if let Some(b) = payload.get_mut(1..5) {
        b.copy_from_slice(&id.to_le_bytes());
    }
}

/// Cursor flags of COM_STMT_EXECUTE; 0 means no cursor.
pub fn execute_flags(payload: &[u8]) -> u8 {
    payload.get(5).copied().unwrap_or(0)
}

/// Why an execute packet could not be re-targeted. MariaDB tells the two
/// apart: a packet cut inside its fixed part or its parameter types is
/// malformed (1835), one that stops before the parameters' part or never
/// sent their types has wrong arguments (1210).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecuteError {
    #[error("malformed COM_STMT_EXECUTE packet")]
    Malformed,
    #[error("the parameters' null bitmap or types flag is missing")]
    NoParameters,
    #[error("parameter types were never sent for this statement")]
    NoTypes,
}

/// Rewrites a COM_STMT_EXECUTE for a backend statement: sets the backend's
/// statement id and makes sure the parameter types are present
/// (`new_params_bound = 1`), taking them from `known_types` when the client
/// sent them on an earlier execute only. Returns the packet to send and the
/// types the client sent this time, if any.
pub fn retarget_execute(
    payload: &[u8],
    backend_id: u32,
    num_params: u16,
    known_types: Option<&[u8]>,
) -> Result<(Vec<u8>, Option<Vec<u8>>), ExecuteError> {
    // command(1) id(4) flags(1) iterations(4)
    const FIXED: usize = 10;
    if payload.len() < FIXED {
        return Err(ExecuteError::Malformed);
    }
    let mut out = Vec::with_capacity(payload.len() + 2 * usize::from(num_params) + 1);
    out.extend_from_slice(&payload[..FIXED]);
    set_statement_id(&mut out, backend_id);
    if num_params == 0 {
        out.extend_from_slice(&payload[FIXED..]);
        return Ok((out, None));
    }
    let bitmap_len = usize::from(num_params).div_ceil(8);
    let bound_at = FIXED + bitmap_len;
    let bitmap = payload
        .get(FIXED..bound_at)
        .ok_or(ExecuteError::NoParameters)?;
    out.extend_from_slice(bitmap);
    let bound = *payload.get(bound_at).ok_or(ExecuteError::NoParameters)?;
    out.push(1);
    let types_len = 2 * usize::from(num_params);
    if bound == 1 {
        let types = payload
            .get(bound_at + 1..bound_at + 1 + types_len)
            .ok_or(ExecuteError::Malformed)?;
        out.extend_from_slice(types);
        out.extend_from_slice(&payload[bound_at + 1 + types_len..]);
        Ok((out, Some(types.to_vec())))
    } else {
        let types = known_types.ok_or(ExecuteError::NoTypes)?;
        out.extend_from_slice(types);
        out.extend_from_slice(&payload[bound_at + 1..]);
        Ok((out, None))
    }
}

/// Parameter index of a COM_STMT_SEND_LONG_DATA.
pub fn long_data_param(payload: &[u8]) -> Option<u16> {
    let b = payload.get(5..7)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execute(id: u32, bound: bool) -> Vec<u8> {
        let mut p = vec![0x17];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(0b10); // second parameter NULL
        if bound {
            p.push(1);
            p.extend_from_slice(&[8, 0, 6, 0]); // LONGLONG, NULL
        } else {
            p.push(0);
        }
        p.extend_from_slice(&5i64.to_le_bytes());
        p
    }

    #[test]
    fn retarget_with_types_keeps_them() {
        let (out, types) = retarget_execute(&execute(1, true), 99, 2, None).unwrap();
        assert_eq!(statement_id(&out), Some(99));
        assert_eq!(types.as_deref(), Some(&[8, 0, 6, 0][..]));
        assert_eq!(&out[10..], &[0b10, 1, 8, 0, 6, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn retarget_without_types_inserts_known_ones() {
        let (out, types) = retarget_execute(&execute(1, false), 3, 2, Some(&[8, 0, 6, 0])).unwrap();
        assert!(types.is_none());
        assert_eq!(out, {
            let mut e = execute(3, true);
            e[1..5].copy_from_slice(&3u32.to_le_bytes());
            e
        });
    }

    #[test]
    fn retarget_without_any_types_is_an_error() {
        assert_eq!(
            retarget_execute(&execute(1, false), 3, 2, None),
            Err(ExecuteError::NoTypes)
        );
    }

    /// Cut where MariaDB answers 1835, or 1210.
    #[test]
    fn packets_cut_short_are_malformed_or_lack_arguments() {
        let whole = execute(1, true);
        for (len, expected) in [
            (6, ExecuteError::Malformed),
            (10, ExecuteError::NoParameters),
            (11, ExecuteError::NoParameters),
            (13, ExecuteError::Malformed),
        ] {
            assert_eq!(
                retarget_execute(&whole[..len], 3, 2, None),
                Err(expected),
                "cut at {len}"
            );
        }
    }

    #[test]
    fn no_params_passes_rest_through() {
        let mut p = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0];
        let (out, _) = retarget_execute(&p, 2, 0, None).unwrap();
        p[1] = 2;
        assert_eq!(out, p);
    }
}
