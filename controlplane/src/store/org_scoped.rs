//! The queries every org-scoped table shares (projects, providers, policies, routes): rows
//! belong to an org, are named by a slug unique in it, and are paged by id.

use sqlx::any::AnyRow;

use super::{map_write, FkMeaning, Page, Store, StoreError};

/// An org-scoped table: its name, the columns its row type reads, and the noun used in
/// `not found` errors.
pub(crate) struct OrgTable {
    pub table: &'static str,
    pub cols: &'static str,
    pub what: &'static str,
}

impl Store {
    /// The row named `slug` in the org.
    pub(crate) async fn find_in_org<R>(
        &self,
        t: &OrgTable,
        org_id: i64,
        slug: &str,
    ) -> Result<R, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
    {
        sqlx::query_as::<_, R>(&format!(
            "SELECT {} FROM {} WHERE org_id = $1 AND slug = $2",
            t.cols, t.table
        ))
        .bind(org_id)
        .bind(slug)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound(t.what))
    }

    /// One page of the org's rows, in id order.
    pub(crate) async fn list_in_org<R>(
        &self,
        t: &OrgTable,
        org_id: i64,
        page: Page,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
    {
        Ok(sqlx::query_as::<_, R>(&format!(
            "SELECT {} FROM {} WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            t.cols, t.table
        ))
        .bind(org_id)
        .bind(page.after)
        .bind(page.limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// The slug of the row with this id.
    pub(crate) async fn slug_by_id(&self, t: &OrgTable, id: i64) -> Result<String, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as(&format!("SELECT slug FROM {} WHERE id = $1", t.table))
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| r.0).ok_or(StoreError::NotFound(t.what))
    }

    /// Deletes the row named `slug`; `in_use` explains a foreign-key refusal (a row that
    /// something still references), when the table can be referenced.
    pub(crate) async fn delete_in_org(
        &self,
        t: &OrgTable,
        org_id: i64,
        slug: &str,
        in_use: Option<&'static str>,
    ) -> Result<(), StoreError> {
        let res = sqlx::query(&format!(
            "DELETE FROM {} WHERE org_id = $1 AND slug = $2",
            t.table
        ))
        .bind(org_id)
        .bind(slug)
        .execute(self.pool())
        .await
        .map_err(|e| match in_use {
            Some(m) => map_write(e, "", FkMeaning::InUse(m)),
            None => StoreError::Db(e),
        })?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound(t.what));
        }
        Ok(())
    }
}
