//! `taskbus user ...` and `taskbus token ...`: the accounts file, edited on the
//! broker's machine (the first admin has no other way in). Each change goes to the
//! audit log as `cli:$USER`.

use std::io::Read;

use clap::Subcommand;

use crate::accounts::{Accounts, Role};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin (one line).
    Add {
        name: String,
        /// viewer, worker, operator or admin.
        #[arg(long, default_value = "viewer")]
        role: Role,
        /// Read the password from stdin (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users and their roles.
    List,
    /// Remove a user and end their sessions.
    Remove { name: String },
    /// Set a user's password (read from stdin); their sessions end.
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set a user's role.
    Role { name: String, role: Role },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (the only time it is shown).
    Create {
        name: String,
        /// viewer, worker, operator or admin.
        #[arg(long, default_value = "operator")]
        role: Role,
    },
    /// List tokens (names and roles, never secrets).
    List,
    /// Revoke a token: it stops working at once.
    Revoke { name: String },
}

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &Role::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

fn open(config: &Config) -> anyhow::Result<(Accounts, String)> {
    let path = config.http.accounts_file(&config.store.data_dir);
    let accounts = Accounts::open(&path)
        .map_err(|e| anyhow::anyhow!("accounts file {}: {e}", path.display()))?;
    let who = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    Ok((accounts, who))
}

fn read_password() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let password = text.lines().next().unwrap_or("").to_owned();
    Ok(password)
}

pub fn user(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let (accounts, who) = open(config)?;
    let keep = config.http.audit_keep;
    match command {
        UserCommand::Add { name, role, .. } => {
            accounts.add_user(&name, role, &read_password()?)?;
            accounts.audit(&who, "user_add", &format!("user={name} role={role}"), keep)?;
            println!("user {name} added ({role})");
        }
        UserCommand::List => {
            for user in accounts.list_users()? {
                println!("{}\t{}", user.name, user.role);
            }
        }
        UserCommand::Remove { name } => {
            accounts.remove_user(&name)?;
            accounts.audit(&who, "user_remove", &format!("user={name}"), keep)?;
            println!("user {name} removed");
        }
        UserCommand::Passwd { name, .. } => {
            accounts.set_password(&name, &read_password()?)?;
            accounts.audit(&who, "user_passwd", &format!("user={name}"), keep)?;
            println!("password of {name} set");
        }
        UserCommand::Role { name, role } => {
            accounts.set_role(&name, role)?;
            accounts.audit(&who, "user_role", &format!("user={name} role={role}"), keep)?;
            println!("user {name} is now {role}");
        }
    }
    Ok(())
}

pub fn token(config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    let (accounts, who) = open(config)?;
    let keep = config.http.audit_keep;
    match command {
        TokenCommand::Create { name, role } => {
            let secret = accounts.create_token(&name, role)?;
            accounts.audit(
                &who,
                "token_create",
                &format!("token={name} role={role}"),
                keep,
            )?;
            println!("{secret}");
        }
        TokenCommand::List => {
            for token in accounts.list_tokens()? {
                println!("{}\t{}", token.name, token.role);
            }
        }
        TokenCommand::Revoke { name } => {
            accounts.revoke_token(&name)?;
            accounts.audit(&who, "token_revoke", &format!("token={name}"), keep)?;
            println!("token {name} revoked");
        }
    }
    Ok(())
}
