import { Modal, type ModalProps } from '@mantine/core';
import { useEffect, useRef, useState } from 'react';

/** The console's main region: where focus goes when the element to return to is gone. */
export const MAIN_ID = 'admin-main';

/** Focuses `el` if it is still on the page, else the console's main region. */
export function focusOrMain(el: Element | null): void {
  const target =
    el instanceof HTMLElement && el.isConnected && el !== document.body
      ? el
      : document.getElementById(MAIN_ID);
  target?.focus();
}

/**
 * A console dialog. The console mounts a dialog only while it is open, so Mantine's own focus
 * return (which runs when `opened` turns false) never runs: this one remembers what had focus
 * when it opened (the button that opened it) and gives focus back to it once it closes, or to
 * the main region when that button is gone (a payment refunded in full, a new plan opened).
 */
export function AdminModal({ children, ...props }: Omit<ModalProps, 'opened'>) {
  const [opener] = useState(() => document.activeElement);
  const mounted = useRef(false);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
      // After React has removed the dialog (its focus trap lets go); not when StrictMode only
      // re-runs the effect (development) and the dialog is still open.
      setTimeout(() => {
        if (!mounted.current) focusOrMain(opener);
      }, 0);
    };
  }, [opener]);
  return (
    <Modal opened returnFocus={false} closeButtonProps={{ 'aria-label': 'Close' }} {...props}>
      {children}
    </Modal>
  );
}
