//! `/api/v2/log-streams`: where the event log is shipped.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ration_domain::LogStream;
use ration_proto::mgmt::{LogStreamCreate, LogStreamPatch, log_stream_view, parse_body};
use ration_store::{EventQuery, Page, StoreError, StreamPosition};
use serde_json::{Value, json};

use super::auth::Principal;
use super::read_body;
use crate::error::ApiError;
use crate::secrets::new_prefixed_id;
use crate::state::AppState;

fn no_stream() -> ApiError {
    ApiError::not_found("The log stream does not exist", "inexistent_log_stream")
}

/// Ration extension: where delivery stands.
async fn delivery(state: &AppState, stream: &LogStream, position: &StreamPosition) -> Result<Value, ApiError> {
    state.events.flushed().await;
    let backlog = state
        .store
        .list_events(&EventQuery {
            types: Vec::new(),
            categories: stream.filters.clone(),
            client_id: None,
            date_from: None,
            date_to: None,
            after_log_id: Some(position.cursor.clone()),
            newest_first: false,
            with_total: true,
            page: Page { page: 0, per_page: 0 },
        })
        .await?
        .total;
    let health = state.deliveries.health(&stream.id);
    let date = |t: Option<ration_domain::UnixTime>| t.map(|t| t.to_rfc3339());
    Ok(json!({
        "last_delivered_log_id": position.last_delivered,
        "backlog": backlog,
        "delivered_total": health.delivered_total,
        "last_error": health.last_error,
        "last_error_at": date(health.last_error_at),
        "failing_since": date(health.failing_since),
    }))
}

async fn view(state: &AppState, stream: &LogStream, position: &StreamPosition) -> Result<Value, ApiError> {
    Ok(log_stream_view(stream, delivery(state, stream, position).await?))
}

pub async fn create(State(state): State<AppState>, principal: Principal, body: Body) -> Result<Response, ApiError> {
    principal.require("create:log_streams")?;
    let input: LogStreamCreate = parse_body(&read_body(body).await?)?;
    let stream = input.into_log_stream(new_prefixed_id("lst_")?, state.now())?;
    let cursor = {
        let _writes = state.writes.lock().await;
        // A new stream ships what happens from now on, not the whole history.
        // A new stream delivers what happens from now on: everything emitted before is in the
        // store first, so that the cursor is past it.
        state.events.flushed().await;
        let cursor = state.store.last_log_id().await?.unwrap_or_default();
        state.store.insert_log_stream(&stream, &cursor).await?;
        StreamPosition { cursor, last_delivered: None }
    };
    state.deliveries.reload(&stream.id).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &stream, &cursor).await?)).into_response())
}

pub async fn list(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    principal.require("read:log_streams")?;
    let mut items = Vec::new();
    for (stream, position) in state.store.list_log_streams().await? {
        items.push(view(&state, &stream, &position).await?);
    }
    Ok(Json(items).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:log_streams")?;
    let (stream, cursor) = state.store.get_log_stream(&id).await?.ok_or_else(no_stream)?;
    Ok(Json(view(&state, &stream, &cursor).await?).into_response())
}

pub async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("update:log_streams")?;
    let input: LogStreamPatch = parse_body(&read_body(body).await?)?;
    let (stream, cursor) = {
        let _writes = state.writes.lock().await;
        let (mut stream, cursor) = state.store.get_log_stream(&id).await?.ok_or_else(no_stream)?;
        input.apply(&mut stream, state.now())?;
        state.store.update_log_stream(&stream).await?;
        (stream, cursor)
    };
    state.deliveries.reload(&id).await?;
    Ok(Json(view(&state, &stream, &cursor).await?).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("delete:log_streams")?;
    {
        let _writes = state.writes.lock().await;
        match state.store.delete_log_stream(&id).await {
            Err(StoreError::NotFound) => return Err(no_stream()),
            other => other?,
        }
    }
    state.deliveries.reload(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
