// The pieces every settings section is made of: a titled card, a list read from the API shown as
// a table with a delete button on each row, a form that sends one change and re-reads the list,
// a labelled field, and the name and value fields of a variable.
import { useState, type FormEvent, type ReactNode } from 'react';
import { useQueryClient, type QueryKey } from '@tanstack/react-query';
import { ActionButton, FormError, QueryView, useSubmit, type QueryState } from './components';

/** A card with its heading; `action` (a delete button) sits beside the heading. */
export function SettingsSection({
  id,
  title,
  action,
  children,
}: {
  id: string;
  title: ReactNode;
  action?: ReactNode;
  children: ReactNode;
}) {
  const heading = <h2 id={id}>{title}</h2>;
  return (
    <section className="card settings-section" aria-labelledby={id}>
      {action ? (
        <div className="settings-head">
          {heading}
          {action}
        </div>
      ) : (
        heading
      )}
      {children}
    </section>
  );
}

/** A form that sends one change and then re-reads `refresh`; its error shown under it. */
export function ChangeForm({
  label,
  submitLabel,
  busyLabel,
  send,
  refresh,
  children,
  onDone,
}: {
  label: string;
  submitLabel: string;
  busyLabel: string;
  send: () => Promise<unknown>;
  refresh: QueryKey;
  children: ReactNode;
  onDone?: () => void;
}) {
  const client = useQueryClient();
  const { busy, error, submit } = useSubmit();
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    submit(async () => {
      await send();
      await client.invalidateQueries({ queryKey: refresh });
      onDone?.();
    });
  };
  return (
    <form className="settings-form" onSubmit={onSubmit} aria-label={label}>
      {children}
      <div className="settings-form-actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? busyLabel : submitLabel}
        </button>
      </div>
      <FormError error={error} />
    </form>
  );
}

/**
 * Delete, then a second click to confirm (or Keep): nothing goes on a single stray click. After
 * `send`, `refresh` is read again.
 */
export function DeleteButton({
  what,
  send,
  refresh,
}: {
  what: string;
  send: () => Promise<unknown>;
  refresh: QueryKey;
}) {
  const client = useQueryClient();
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button
        type="button"
        className="btn btn-secondary"
        aria-label={`Delete ${what}`}
        onClick={() => setAsking(true)}
      >
        Delete
      </button>
    );
  return (
    <span className="confirm" role="group" aria-label={`Confirm deleting ${what}`}>
      <ActionButton
        label="Confirm delete"
        busyLabel="Deleting…"
        variant="danger"
        run={() => send().then(() => client.invalidateQueries({ queryKey: refresh }))}
      />
      {/* the focus goes to the safe choice, so a keyboard user is not left on a vanished button */}
      <button type="button" className="btn btn-link" onClick={() => setAsking(false)} autoFocus>
        Keep
      </button>
    </span>
  );
}

export function Field({ id, label, children }: { id: string; label: string; children: ReactNode }) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children}
    </div>
  );
}

/**
 * A list read from the API (`query`, re-read after a delete under `refresh`) as a table: a
 * column a heading in `columns`, the cells of a row from `cells` (its first a row header), and
 * last a delete button for the row, labelled `Delete {deleteWhat(item)}`. Loading, its error and
 * `empty` (a muted line) take the table's place.
 */
export function SettingsTable<T>({
  query,
  refresh,
  loading,
  empty,
  caption,
  columns,
  rowKey,
  rowData,
  cells,
  deleteWhat,
  sendDelete,
}: {
  query: QueryState<T[]>;
  refresh: QueryKey;
  loading: string;
  empty: string;
  caption: ReactNode;
  columns: string[];
  rowKey: (item: T) => string;
  rowData?: (item: T) => Record<`data-${string}`, string>;
  cells: (item: T) => ReactNode;
  deleteWhat: (item: T) => string;
  sendDelete: (item: T) => Promise<unknown>;
}) {
  return (
    <QueryView query={query} what={loading} empty={<p className="muted">{empty}</p>}>
      {(items) => (
        <table className="settings-table">
          <caption className="sr-only">{caption}</caption>
          <thead>
            <tr>
              {columns.map((c) => (
                <th key={c} scope="col">
                  {c}
                </th>
              ))}
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {items.map((item) => (
              <tr key={rowKey(item)} {...rowData?.(item)}>
                {cells(item)}
                <td className="num">
                  <DeleteButton what={deleteWhat(item)} send={() => sendDelete(item)} refresh={refresh} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </QueryView>
  );
}

/** The name and value of a variable (a project's or a context's): the value is never read back. */
export function VariableFields({
  idPrefix,
  name,
  setName,
  value,
  setValue,
}: {
  idPrefix: string;
  name: string;
  setName: (name: string) => void;
  value: string;
  setValue: (value: string) => void;
}) {
  return (
    <>
      <Field id={`${idPrefix}-name`} label="Name">
        <input
          id={`${idPrefix}-name`}
          value={name}
          onChange={(e) => setName(e.target.value)}
          required
          pattern="[A-Za-z_][A-Za-z0-9_]*"
          title="Letters, digits and underscores, not starting with a digit"
          spellCheck={false}
          autoComplete="off"
        />
      </Field>
      <Field id={`${idPrefix}-value`} label="Value">
        <input
          id={`${idPrefix}-value`}
          type="password"
          value={value}
          onChange={(e) => setValue(e.target.value)}
          required
          autoComplete="new-password"
        />
      </Field>
    </>
  );
}
