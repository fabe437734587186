//! `reglament users password LOGIN [--password-stdin]`: sets a user's sign-in password for the
//! web pages (argon2id hash), prompted twice on the terminal or read as one line from stdin.
//! The user's open browser sessions end.

use std::io::BufRead;

use anyhow::{Context, bail};

use reglament_server::identity::{SetPasswordError, set_password};
use reglament_store::Store;

/// Reads the new password: one line of `input` with `from_stdin`, else prompted (twice).
pub fn read_password(from_stdin: bool, input: &mut dyn BufRead) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        input.read_line(&mut line).context("cannot read the password from stdin")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let first = rpassword::prompt_password("Новый пароль: ").context("cannot read the password from the terminal")?;
    let second =
        rpassword::prompt_password("Повторите пароль: ").context("cannot read the password from the terminal")?;
    if first != second {
        bail!("пароли не совпадают");
    }
    Ok(first)
}

/// Sets the password of an existing user.
pub async fn run(store: &Store, login: &str, password: &str) -> anyhow::Result<()> {
    match set_password(store, login, password, chrono::Utc::now()).await {
        Ok(true) => crate::users_cmd::record_act(store, "user.password", login, serde_json::json!({})).await,
        Ok(false) => bail!(
            "пользователя `{login}` нет (создайте его: `reglament users add`, или запустите сервер, чтобы загрузился справочник)"
        ),
        Err(SetPasswordError::Weak(message)) => bail!("{message}"),
        Err(e) => Err(anyhow::Error::from(e).context("cannot save the password")),
    }
}
